//! The reconciler's errors: each names the write or read that failed and the object, so that a log line or an
//! Event says what to look at. Variant names are the `error` label of the error metric.

use kube::runtime::finalizer;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {kind} {name}: {source}")]
    Read {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting {kind} {name}: {source}")]
    Delete {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// `deletionPolicy: Retain`: taking the Stack's owner reference off an object it leaves behind.
    #[error("releasing {kind} {name} from the Stack: {source}")]
    Release {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the Stack's status: {0}")]
    Status(#[source] kube::Error),
    #[error("the Stack has no namespace")]
    Unnamespaced,
    #[error(transparent)]
    Finalizer(Box<finalizer::Error<Error>>),
}

impl Error {
    /// The error's name in metrics: the variant, or for finalizer errors the reconcile error inside.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Read { .. } => "Read",
            Error::Apply { .. } => "Apply",
            Error::Delete { .. } => "Delete",
            Error::Release { .. } => "Release",
            Error::Status(_) => "Status",
            Error::Unnamespaced => "Unnamespaced",
            Error::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::ApplyFailed(err) | finalizer::Error::CleanupFailed(err) => {
                    err.metric_label()
                }
                _ => "Finalizer",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finalizer_errors_are_counted_under_the_reconcile_error_inside() {
        let inner = Error::Status(kube::Error::LinesCodecMaxLineLengthExceeded);
        let wrapped = Error::Finalizer(Box::new(finalizer::Error::ApplyFailed(inner)));
        assert_eq!(wrapped.metric_label(), "Status");
        let finalizer_only = Error::Finalizer(Box::new(finalizer::Error::UnnamedObject));
        assert_eq!(finalizer_only.metric_label(), "Finalizer");
    }
}
