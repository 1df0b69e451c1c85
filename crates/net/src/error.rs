/// A link failure, always naming the peer concerned.
///
/// Set-up failures ([`Connect`](NetError::Connect), [`Tls`](NetError::Tls)) name the peer too;
/// only errors that concern no peer (a bad configuration, an unreadable key file) are
/// [`Config`](NetError::Config).
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
    /// No link to `peer` could be set up before the connect deadline.
    #[error("could not connect to party {peer}: {reason}")]
    Connect { peer: usize, reason: String },
    /// The TLS handshake with `peer` failed: it presented a certificate other than the one
    /// pinned for it, it rejected ours, or the handshake broke down.
    #[error("TLS with party {peer} failed: {reason}")]
    Tls { peer: usize, reason: String },
    /// A configuration or key-file problem that concerns no single peer.
    #[error("network configuration: {reason}")]
    Config { reason: String },
}
