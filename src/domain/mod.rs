//! paygate's domain: validated value types, the payment state machine and events. No I/O here.

pub mod customer;
pub mod error;
pub mod event;
pub mod money;
pub mod operation;
pub mod payment;
pub mod phone;
pub mod receipt;
pub mod reference;
pub mod request;
pub mod state;

pub use customer::{CustomerKey, CustomerProfile};
pub use error::{FieldViolation, PaygateError};
pub use event::{EventName, EventSource, NewEvent, PaymentEvent};
pub use money::{Currency, Money};
pub use operation::{NewOperation, Operation, OperationKind, OperationStatus};
pub use payment::{Aggregate, Payment, ProfileOutcome, RemoteView, UserFlow};
pub use phone::PhoneNumber;
pub use receipt::{BottomLine, OrderLine, Receipt, UnitInfo};
pub use reference::{IdempotencyKey, Reference};
pub use request::{Cancel, CaptureOrRefund, CreatePayment, CreatePaymentInput};
pub use state::PaymentState;
