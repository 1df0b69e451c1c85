//! Links between the parties of a session.
//!
//! A [`Session`] is one party's view of the network: a link to every other party, each with its
//! own reader and writer so that two parties sending large tensors to each other at once cannot
//! deadlock on full buffers. Messages are vectors of ring elements (`u64`), framed as a whole and
//! never serialised element by element. Every link counts the bytes that cross it and the
//! communication rounds a party waits for.
//!
//! Transports: [`Session::local`] connects parties of one process through in-memory channels
//! (tests, `--backend porthos` runs); networked sessions connect over TCP (see `tcp`).

mod error;
mod session;

pub use error::NetError;
pub use session::{Session, Traffic};
