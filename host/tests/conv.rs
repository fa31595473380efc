//! Convolution (im2col + GEMM, chunked) against direct CPU loops in f64
//! (pooling: `pool.rs`). Convolution tolerance per element: the
//! dot-product bound γ·Σ|w||x| with γ = (terms + 4)·ε_f32, terms being the
//! length of each sum (C·k² forward, N·OH·OW for the weight gradient,
//! C_out·k² for the input gradient).
//!
//! With f16 storage (devices with shader-f16) the forward and the weight
//! gradient read f16 columns and weights: they are compared with the loops
//! run on the f16-rounded x and weight (rounded to nearest, ties to even),
//! with the same f32 bound plus 2⁻⁹·Σ|w||x| since WGSL lets the device's
//! f32 → f16 conversion round to either neighbour (one f16 ulp, ≤ 2⁻¹⁰
//! relative, on each of the two operands). The input gradient stays f32.
mod common;

use common::{gpus, normals};
use scorecl_host::ops::conv::{self, cpu, ConvPrecision, ConvScratch, ConvShape};
use scorecl_host::{DType, Gpu};

#[allow(clippy::too_many_arguments)]
fn shape(
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> ConvShape {
    ConvShape {
        n,
        cin,
        h,
        w,
        cout,
        k,
        stride,
        pad,
    }
}

fn within(what: &str, got: &[f32], want: &[f32], mag: &[f32], terms: usize) {
    within_plus(what, got, want, mag, terms, 0.0)
}

/// As [`within`] with `extra`·Σ|w||x| added to the bound (f16 rounding).
fn within_plus(what: &str, got: &[f32], want: &[f32], mag: &[f32], terms: usize, extra: f32) {
    let gamma = (terms as f32 + 4.0) * f32::EPSILON + extra;
    for i in 0..want.len() {
        let tol = gamma * mag[i] + 1e-6;
        assert!(
            (got[i] - want[i]).abs() <= tol,
            "{what}[{i}]: {} vs {} (tol {tol:e})",
            got[i],
            want[i]
        );
    }
}

fn to_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| half::f16::from_f32(*x).to_f32()).collect()
}

fn check_conv(gpu: &Gpu, s: &ConvShape, scratch_images: f32, seed: u64, precision: ConvPrecision) {
    let x = normals(seed, s.in_len(), 1.0);
    let wt = normals(seed + 1, s.weight_len(), 0.5);
    let dout = normals(seed + 2, s.out_len(), 1.0);
    let tx = gpu.upload(&x, &[s.in_len()]).unwrap();
    let tw = gpu.upload(&wt, &[s.weight_len()]).unwrap();
    let tdo = gpu.upload(&dout, &[s.out_len()]).unwrap();
    let per = ConvScratch::per_image(gpu, s, precision);
    let scratch_len = ((per as f32) * scratch_images).ceil() as usize;
    let scratch = ConvScratch::new(gpu, scratch_len, s.weight_len(), precision).unwrap();
    let half = scratch.precision() == ConvPrecision::F16;
    assert_eq!(
        half,
        precision == ConvPrecision::F16 && gpu.caps.f16,
        "f16 storage is used exactly when asked for and offered"
    );
    let out = gpu.tensor(&[s.out_len()], DType::F32).unwrap();
    let dw0 = normals(seed + 3, s.weight_len(), 0.1);
    let tdw = gpu.upload(&dw0, &[s.weight_len()]).unwrap();
    let tdx = gpu.tensor(&[s.in_len()], DType::F32).unwrap();
    let mut st = gpu.step("conv");
    conv::conv2d(&mut st, &tx, &tw, s, &scratch, &out).unwrap();
    conv::conv2d_backward(&mut st, &tx, &tw, &tdo, s, &scratch, &tdw, Some(&tdx)).unwrap();
    let (io, iw, ix) = (st.readback(&out), st.readback(&tdw), st.readback(&tdx));
    let r = st.submit().unwrap();
    let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<f32>>();
    // What the products read: the f16-rounded operands with f16 storage.
    let (xs, ws, extra) = if half {
        (to_f16(&x), to_f16(&wt), 2f32.powi(-9))
    } else {
        (x.clone(), wt.clone(), 0.0)
    };
    let want = cpu::conv2d(&xs, &ws, s);
    let winograd = conv::uses_winograd(gpu, s, &scratch);
    let (mag, terms) = if winograd {
        (cpu::winograd_magnitude(&xs, &ws, s), s.cin + 11)
    } else {
        (cpu::conv2d(&abs(&xs), &abs(&ws), s), s.ckk())
    };
    within_plus(
        &format!("{s:?} {precision:?} out (Winograd: {winograd})"),
        &r.f32(io)[..s.out_len()],
        &want,
        &mag,
        terms,
        extra,
    );
    let (dw, _) = cpu::conv2d_backward(&xs, &wt, &dout, s);
    let (mw, _) = cpu::conv2d_backward(&abs(&xs), &abs(&wt), &abs(&dout), s);
    let (_, dx) = cpu::conv2d_backward(&x, &wt, &dout, s);
    let (mx, terms) = if winograd {
        (cpu::winograd_magnitude_dx(&dout, &wt, s), s.cout + 11)
    } else {
        let (_, mx) = cpu::conv2d_backward(&abs(&x), &abs(&wt), &abs(&dout), s);
        (mx, s.cout * s.k * s.k)
    };
    // dW accumulates onto its previous value.
    let want_dw: Vec<f32> = dw.iter().zip(&dw0).map(|(a, b)| a + b).collect();
    let mag_dw: Vec<f32> = mw.iter().zip(&dw0).map(|(a, b)| a + b.abs()).collect();
    within_plus(
        &format!("{s:?} {precision:?} dW"),
        &r.f32(iw)[..s.weight_len()],
        &want_dw,
        &mag_dw,
        s.n * s.oh() * s.ow() + 1,
        extra / 2.0,
    );
    within(
        &format!("{s:?} dx (Winograd: {winograd})"),
        &r.f32(ix)[..s.in_len()],
        &dx,
        &mx,
        terms,
    );
}

/// Shapes (stride, padding, 1×1 and 7×7 kernels, aligned and unaligned
/// OH·OW) with the scratch size in images (fractions force chunking; on
/// the native device, fewer threads or smaller blocks).
fn conv_cases() -> [(ConvShape, f32); 14] {
    [
        // Enough images for blocks of several images on the native
        // device, the last one short.
        (shape(21, 4, 6, 6, 8, 3, 1, 1), 21.0),
        (shape(2, 3, 7, 7, 4, 3, 1, 1), 2.0),
        (shape(3, 5, 9, 6, 8, 3, 2, 1), 1.5),
        (shape(1, 2, 5, 5, 3, 1, 1, 0), 1.0),
        (shape(4, 3, 32, 32, 8, 7, 2, 3), 4.0),
        (shape(2, 8, 4, 4, 16, 3, 2, 1), 1.0),
        (shape(5, 4, 8, 8, 8, 1, 2, 0), 2.5),
        (shape(2, 1, 3, 3, 1, 3, 1, 0), 1.0),
        // Output rows as wide as the input's at stride 1 with taps that
        // reach past the map (whole rows and columns of padding), and a
        // stride-3 kernel whose taps skip columns.
        (shape(3, 2, 2, 2, 3, 7, 1, 3), 3.0),
        (shape(2, 3, 10, 11, 4, 5, 3, 2), 2.0),
        // Stride-1, padding-1 3×3 kernels with 16 channels or more on
        // maps of 8 × 8 or more: the native device's Winograd path. Even
        // and odd sides (tiles half outside the map), C_in ≠ C_out, a
        // scratch of 2.5 images; and a map just too small for it.
        (shape(3, 16, 8, 8, 16, 3, 1, 1), 3.0),
        (shape(2, 16, 9, 11, 24, 3, 1, 1), 2.0),
        (shape(5, 24, 8, 10, 16, 3, 1, 1), 2.5),
        (shape(2, 16, 7, 8, 16, 3, 1, 1), 2.0),
    ]
}

/// The native device runs the stride-1, padding-1 3×3 convolutions with
/// 16 channels or more on maps of 8 × 8 or more through Winograd, the others (and every shape on
/// the WGSL devices) through im2col + GEMM, so that the cases above test
/// both.
#[test]
fn winograd_runs_exactly_the_eligible_shapes_on_the_native_device() {
    for gpu in gpus() {
        for (s, images) in conv_cases() {
            let per = ConvScratch::per_image(gpu, &s, ConvPrecision::F32);
            let len = ((per as f32) * images).ceil() as usize;
            let scratch = ConvScratch::new(gpu, len, s.weight_len(), ConvPrecision::F32).unwrap();
            let eligible =
                (s.k, s.stride, s.pad) == (3, 1, 1) && s.cin.min(s.cout) >= 16 && s.h.min(s.w) >= 8;
            assert_eq!(
                conv::uses_winograd(gpu, &s, &scratch),
                gpu.is_native() && eligible,
                "{s:?} on {}",
                gpu.info.name
            );
        }
    }
}

#[test]
fn conv2d_forward_and_backward_match_direct_loops() {
    for gpu in gpus() {
        for (i, (s, chunk)) in conv_cases().iter().enumerate() {
            check_conv(gpu, s, *chunk, 100 + i as u64 * 10, ConvPrecision::F32);
        }
    }
}

/// f16 storage of the columns and weights (f32 accumulation) on the device
/// with shader-f16; on the fallback device the same request runs in f32.
#[test]
fn conv2d_with_f16_storage_matches_the_loops_on_rounded_operands() {
    for gpu in gpus() {
        for (i, (s, chunk)) in conv_cases().iter().enumerate() {
            check_conv(gpu, s, *chunk, 300 + i as u64 * 10, ConvPrecision::F16);
        }
    }
}

/// The input gradient with a residual branch fused into col2im: `+ t`, and
/// `+ relu'(y)·dy`; the columns' part is the plain backward's, so the sum
/// is compared bitwise with the separate add it replaces.
#[test]
fn conv2d_backward_adds_the_other_branch() {
    let shapes = [
        shape(2, 3, 7, 7, 4, 3, 1, 1),
        shape(2, 16, 9, 8, 16, 3, 1, 1),
    ];
    for (gpu, s) in gpus().into_iter().flat_map(|g| shapes.map(|s| (g, s))) {
        let x = normals(41, s.in_len(), 1.0);
        let wt = normals(42, s.weight_len(), 0.5);
        let dout = normals(43, s.out_len(), 1.0);
        let t = normals(44, s.in_len(), 1.0);
        let y = normals(45, s.in_len(), 1.0);
        let up = |v: &[f32]| gpu.upload(v, &[v.len()]).unwrap();
        let (tx, tw, tdo, tt, ty) = (up(&x), up(&wt), up(&dout), up(&t), up(&y));
        let scratch = ConvScratch::new(
            gpu,
            s.n * ConvScratch::per_image(gpu, &s, ConvPrecision::F32),
            s.weight_len(),
            ConvPrecision::F32,
        )
        .unwrap();
        let dw = gpu.zeros(&[s.weight_len()]).unwrap();
        let dx = [0, 1, 2].map(|_| gpu.tensor(&[s.in_len()], DType::F32).unwrap());
        let mut st = gpu.step("conv backward add");
        conv::conv2d_backward(&mut st, &tx, &tw, &tdo, &s, &scratch, &dw, Some(&dx[0])).unwrap();
        let add = conv::DxAdd::Add(&tt);
        conv::conv2d_backward_add(
            &mut st,
            &tx,
            &tw,
            &tdo,
            &s,
            &scratch,
            &dw,
            Some(&dx[1]),
            add,
        )
        .unwrap();
        let relu = conv::DxAdd::AddRelu { dy: &tt, y: &ty };
        conv::conv2d_backward_add(
            &mut st,
            &tx,
            &tw,
            &tdo,
            &s,
            &scratch,
            &dw,
            Some(&dx[2]),
            relu,
        )
        .unwrap();
        let i = dx.each_ref().map(|d| st.readback(d));
        let r = st.submit().unwrap();
        let plain = &r.f32(i[0])[..s.in_len()];
        let want_add: Vec<f32> = plain.iter().zip(&t).map(|(a, b)| a + b).collect();
        let want_relu: Vec<f32> = (0..s.in_len())
            .map(|k| plain[k] + if y[k] > 0.0 { t[k] } else { 0.0 })
            .collect();
        assert_eq!(&r.f32(i[1])[..s.in_len()], &want_add[..], "dx + t");
        assert_eq!(
            &r.f32(i[2])[..s.in_len()],
            &want_relu[..],
            "dx + relu'(y) dy"
        );
        // A wrong-sized branch is named.
        let short = gpu.zeros(&[3]).unwrap();
        let mut st = gpu.step("bad add");
        let e = conv::conv2d_backward_add(
            &mut st,
            &tx,
            &tw,
            &tdo,
            &s,
            &scratch,
            &dw,
            Some(&dx[1]),
            conv::DxAdd::Add(&short),
        )
        .unwrap_err();
        assert!(e.to_string().contains("col2im addend"), "{e}");
    }
}

#[test]
fn a_too_small_scratch_is_named() {
    let Some(gpu) = gpus().into_iter().next() else {
        return;
    };
    let s = shape(1, 4, 8, 8, 4, 3, 1, 1);
    let x = gpu.zeros(&[s.in_len()]).unwrap();
    let w = gpu.zeros(&[s.weight_len()]).unwrap();
    let out = gpu.zeros(&[s.out_len()]).unwrap();
    let scratch = ConvScratch::new(gpu, 10, s.weight_len(), ConvPrecision::F32).unwrap();
    let mut st = gpu.step("small");
    let e = conv::conv2d(&mut st, &x, &w, &s, &scratch, &out).unwrap_err();
    assert!(e.to_string().contains("conv scratch"), "{e}");
}
