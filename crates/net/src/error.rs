/// A link failure, always naming the peer concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("party {peer} disconnected")]
    Disconnected { peer: usize },
    #[error("party {peer} sent nothing for {seconds} s")]
    Timeout { peer: usize, seconds: u64 },
    #[error("party {peer} sent {got} elements where {expected} were expected")]
    WrongLength { peer: usize, expected: usize, got: usize },
    #[error("party {peer}: {reason}")]
    Protocol { peer: usize, reason: String },
    #[error("no link from party {from} to party {to}")]
    NoSuchPeer { from: usize, to: usize },
}
