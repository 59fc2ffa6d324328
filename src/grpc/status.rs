//! One exhaustive mapping from `PaygateError` to `tonic::Status`.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::PaygateError;

/// At most this many field violations are detailed: gRPC errors travel in headers, which
/// clients cap (16 KiB in hyper, 8 KiB in grpc-java).
const MAX_VIOLATIONS: usize = 20;
/// Field names can quote caller text (`metadata[<key>]`): keep them short.
const MAX_FIELD: usize = 80;

fn shorten(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        return s;
    }
    let mut cut: String = s.chars().take(max).collect();
    cut.push('…');
    cut
}

pub fn to_status(e: PaygateError) -> Status {
    let message = shorten(e.to_string(), 1024);
    match e {
        PaygateError::InvalidArgument(violations) => {
            let total = violations.len();
            let mut details = ErrorDetails::new();
            let mut summary = Vec::new();
            for v in violations.into_iter().take(MAX_VIOLATIONS) {
                let field = shorten(v.field, MAX_FIELD);
                summary.push(format!("{field}: {}", v.description));
                details.add_bad_request_violation(field, v.description);
            }
            if total > MAX_VIOLATIONS {
                let more = format!("and {} more violations", total - MAX_VIOLATIONS);
                summary.push(more.clone());
                details.add_bad_request_violation("request", more);
            }
            let message = shorten(format!("invalid request: {}", summary.join("; ")), 2048);
            Status::with_error_details(Code::InvalidArgument, message, details)
        }
        PaygateError::NotFound(_) => Status::not_found(message),
        PaygateError::AlreadyExists(_) => Status::already_exists(message),
        PaygateError::FailedPrecondition(_) => Status::failed_precondition(message),
        PaygateError::ResourceExhausted(_) => Status::resource_exhausted(message),
        PaygateError::OutOfRange(_) => Status::out_of_range(message),
        PaygateError::Unavailable(_) => Status::unavailable(message),
        PaygateError::Internal(_) => {
            tracing::error!(error = %message, "internal error");
            Status::internal(message)
        }
    }
}
