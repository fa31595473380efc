//! `scorecl plot`: a run directory's PNG plots from its metrics.jsonl.

/// The arguments of `scorecl plot`.
#[derive(clap::Args)]
pub struct PlotArgs {
    /// The run directory.
    run_dir: std::path::PathBuf,
}

/// Runs `scorecl plot`.
pub(super) fn run(a: &PlotArgs) -> anyhow::Result<()> {
    let PlotArgs { run_dir } = a;

    let files = crate::plot::plot_run(run_dir)?;
    anyhow::ensure!(
        !files.is_empty(),
        "{}: no epoch records to plot yet",
        run_dir.join("metrics.jsonl").display()
    );
    for f in files {
        println!("{}", f.display());
    }

    Ok(())
}
