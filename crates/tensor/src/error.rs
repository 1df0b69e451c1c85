/// A tensor operation was asked to work on shapes it cannot combine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(pub String);

impl ShapeError {
    pub fn new(message: impl Into<String>) -> Self {
        ShapeError(message.into())
    }
}

/// Returns early with a [`ShapeError`] built from a format string.
#[macro_export]
macro_rules! shape_bail {
    ($($arg:tt)*) => {
        return Err($crate::ShapeError::new(format!($($arg)*)))
    };
}
