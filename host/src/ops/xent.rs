//! Softmax cross-entropy on the GPU (`shaders/wgsl/xent.wgsl`). CPU twin:
//! scorecl-core's `xent::softmax_xent`; test: `host/tests/linear_probe.rs`.

use scorecl_shaders::XENT;

use crate::error::Result;
use crate::kernel_params;
use crate::step::{grid, Step};
use crate::tensor::Tensor;

kernel_params! {
    struct Params {
        rows: u32,
        classes: u32,
        scale: f32,
        y_off: u32,
    }
}

/// This family's parameters struct, for the layout test.
pub(crate) const PARAMS: crate::kernel::ParamsDecl = crate::kernel::ParamsDecl::of::<Params>();

/// Per-row losses `loss[r] = logsumexp(z_r) − z_r[y_r]` of `logits`
/// `[rows, classes]` (`y_r = labels[y_off + r]`, u32), and `grad = scale · (softmax − onehot)`
/// (`scale = 1/rows` gives the gradient of the mean).
#[allow(clippy::too_many_arguments)]
pub fn xent(
    step: &mut Step,
    logits: &Tensor,
    labels: &Tensor,
    y_off: usize,
    rows: usize,
    classes: usize,
    scale: f32,
    loss: &Tensor,
    grad: &Tensor,
) -> Result<()> {
    logits.expect_len("xent logits", rows * classes)?;
    if labels.len() < y_off + rows {
        return Err(crate::Error::shape(
            "xent labels",
            format!(
                "{} labels, rows {y_off}..{} asked",
                labels.len(),
                y_off + rows
            ),
        ));
    }
    loss.expect_len("xent loss", rows)?;
    grad.expect_len("xent grad", rows * classes)?;
    let k = step.gpu().kernel(&XENT, "xent", &[], &[])?;
    let p = Params {
        rows: rows as u32,
        classes: classes as u32,
        scale,
        y_off: y_off as u32,
    };
    step.dispatch(
        &k,
        &p,
        crate::bind![logits, labels, loss, grad],
        grid(rows, 64),
    )
}

/// Native CPU twin of `xent`, a row per parallel task.
pub(crate) mod native {
    use super::Params;
    use crate::error::Result;
    use crate::native::{need, rows_mut, Invocation, KernelFn, SharedMut};

    pub(crate) fn kernel(entry: &str) -> Option<KernelFn> {
        match entry {
            "xent" => Some(xent),
            _ => None,
        }
    }

    fn xent(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (logits, labels) = (inv.f32(0)?, inv.u32(1)?);
        let (loss, grad) = (inv.f32_mut(2)?, inv.f32_mut(3)?);
        let (rows, classes, y_off) = (p.rows as usize, p.classes as usize, p.y_off as usize);
        need(
            inv,
            &[
                ("logits", logits.len(), rows * classes),
                ("labels", labels.len(), y_off + rows),
                ("loss", loss.len(), rows),
                ("grad", grad.len(), rows * classes),
            ],
        )?;
        if classes == 0 {
            return Ok(());
        }
        if let Some(y) = labels[y_off..y_off + rows]
            .iter()
            .find(|y| **y as usize >= classes)
        {
            return Err(inv.short("labels (a label)", classes, *y as usize + 1));
        }
        let loss = SharedMut::new(loss);
        rows_mut(grad, rows, classes, 3 * classes, |r, g| {
            let z = &logits[r * classes..(r + 1) * classes];
            let mut m = z[0];
            for v in &z[1..] {
                m = m.max(*v);
            }
            let mut total = 0.0f32;
            for v in z {
                total += (v - m).exp();
            }
            let y = labels[y_off + r] as usize;
            loss.set(r, m + total.ln() - z[y]);
            let inv_s = 1.0 / total;
            for (c, o) in g.iter_mut().enumerate() {
                let mut v = (z[c] - m).exp() * inv_s;
                if c == y {
                    v -= 1.0;
                }
                *o = p.scale * v;
            }
        });
        Ok(())
    }
}
