#![doc = include_str!("../README.md")]
//!
//! It must not depend on any service crate: it speaks only the wire protocol.

mod client;
mod error;
mod session;
pub mod token;

pub use client::{Client, ConnectOptions};
pub use error::SdkError;
pub use session::{Event, Session, SessionOptions};
