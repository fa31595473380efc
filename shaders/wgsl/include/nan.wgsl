// NaN kept as PyTorch keeps it (CPU twins: scorecl-core's `math::relu`,
// `math::relu_passes`). The NaN test is on the bits: a compiler that
// assumes finite math may fold a comparison such as x != x.
fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }

// PyTorch's relu: max(x, 0), with NaN staying NaN.
fn relu_of(x: f32) -> f32 { return select(max(x, 0.0), x, is_nan(x)); }

// The ReLU gradient's mask as PyTorch's threshold_backward: the gradient
// passes where x > 0 or x is NaN.
fn relu_passes(x: f32) -> bool { return x > 0.0 || is_nan(x); }
