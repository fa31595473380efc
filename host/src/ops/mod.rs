//! Operations on GPU tensors, one module per WGSL family. Each records
//! dispatches into a [`Step`](crate::Step); its CPU twin is named in its
//! module documentation, and its test lives in `host/tests/<module>.rs`.

pub mod augment;
pub mod batchnorm;
pub mod conv;
pub mod dsm;
pub mod elementwise;
pub mod gemm;
pub mod knn;
pub mod linear;
pub mod optim;
pub mod pair_weights;
pub mod pool;
pub mod reduce;
pub mod rng;
pub mod rows;
pub mod simclr;
pub mod simsiam;
pub mod unet;
pub mod vicreg;
pub mod wmse;
pub mod xent;

/// The length of the weights of a loss with a term per view: `n` (one per
/// pair) or `2n` (one per view), else an error naming `what`.
pub(crate) fn view_weights_len(
    what: &str,
    w: &crate::tensor::Tensor,
    n: usize,
) -> crate::error::Result<usize> {
    if w.len() == 2 * n {
        return Ok(2 * n);
    }
    w.expect_len(what, n)?;
    Ok(n)
}

/// Every kernel family's WGSL module beside the Rust parameters struct its
/// dispatches pass (`host/tests/runtime.rs` checks each against every entry
/// point of every variant).
pub fn params_structs() -> Vec<(&'static scorecl_shaders::Module, crate::kernel::ParamsDecl)> {
    use scorecl_shaders as s;
    vec![
        (&s::AUGMENT, augment::PARAMS),
        (&s::BATCHNORM, batchnorm::PARAMS),
        (&s::CONV, conv::PARAMS),
        (&s::DSM, dsm::PARAMS),
        (&s::ELEMENTWISE, elementwise::PARAMS),
        (&s::GEMM, gemm::PARAMS),
        (&s::KNN, knn::PARAMS),
        (&s::OPTIM, optim::PARAMS),
        (&s::PAIR_WEIGHTS, pair_weights::PARAMS),
        (&s::POOL, pool::PARAMS),
        (&s::REDUCE, reduce::PARAMS),
        (&s::RNG, rng::PARAMS),
        (&s::ROWS, rows::PARAMS),
        (&s::SIMCLR, simclr::PARAMS),
        (&s::SIMSIAM, simsiam::PARAMS),
        (&s::UNET, unet::PARAMS),
        (&s::VICREG, vicreg::PARAMS),
        (&s::WMSE, wmse::PARAMS),
        (&s::XENT, xent::PARAMS),
    ]
}
