use core::fmt;

/// Result type of the core.
pub type Result<T> = core::result::Result<T, CoreError>;

/// Everything that can go wrong in the core. Each variant names the
/// argument, field or position at fault so that callers can turn it into
/// a message a user can act on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CoreError {
    /// A slice has the wrong length for the stated shape.
    Shape {
        /// Which argument.
        what: &'static str,
        /// Length the shape implies.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// The caller's scratch slice is shorter than the function needs.
    Scratch {
        /// Which function.
        what: &'static str,
        /// Length needed.
        needed: usize,
        /// Length given.
        got: usize,
    },
    /// A configuration value or size argument is out of its allowed range.
    Config {
        /// The field or argument.
        field: &'static str,
        /// The allowed range, in words.
        allowed: &'static str,
    },
    /// A whitening covariance is not numerically positive definite in f32.
    NotPositiveDefinite {
        /// 0 for the first view, 1 for the second.
        view: usize,
        /// Which chunk of `w_size` rows.
        chunk: usize,
        /// The Cholesky column whose pivot failed.
        column: usize,
    },
    /// A label is not below the number of classes.
    Label {
        /// Position of the label.
        index: usize,
        /// Its value.
        label: u32,
        /// The number of classes.
        classes: usize,
    },
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CoreError::Shape {
                what,
                expected,
                got,
            } => write!(f, "`{what}` has {got} elements, expected {expected}"),
            CoreError::Scratch { what, needed, got } => {
                write!(f, "scratch for `{what}` has {got} elements, needs {needed}")
            }
            CoreError::Config { field, allowed } => {
                write!(f, "`{field}` is out of range: allowed {allowed}")
            }
            CoreError::NotPositiveDefinite {
                view,
                chunk,
                column,
            } => write!(
                f,
                "W-MSE whitening: covariance of view {view}, chunk {chunk} is not positive \
                 definite (Cholesky pivot {column}); raise `eps` or `w_size`"
            ),
            CoreError::Label {
                index,
                label,
                classes,
            } => write!(
                f,
                "label {label} at position {index} is out of range for {classes} classes"
            ),
        }
    }
}

impl core::error::Error for CoreError {}
