//! One exhaustive mapping from `PaygateError` to `tonic::Status`.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::PaygateError;

pub fn to_status(e: PaygateError) -> Status {
    let message = e.to_string();
    match e {
        PaygateError::InvalidArgument(violations) => {
            let mut details = ErrorDetails::new();
            for v in violations {
                details.add_bad_request_violation(v.field, v.description);
            }
            Status::with_error_details(Code::InvalidArgument, message, details)
        }
        PaygateError::NotFound(_) => Status::not_found(message),
        PaygateError::AlreadyExists(_) => Status::already_exists(message),
        PaygateError::FailedPrecondition(_) => Status::failed_precondition(message),
        PaygateError::ResourceExhausted(_) => Status::resource_exhausted(message),
        PaygateError::Unavailable(_) => Status::unavailable(message),
        PaygateError::Internal(_) => {
            tracing::error!(error = %message, "internal error");
            Status::internal(message)
        }
    }
}
