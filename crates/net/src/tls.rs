//! Party identities (self-signed certificates with pinning) and the rustls configurations.
//!
//! See the crate documentation for what each party must trust and what TLS protects.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::NetError;

/// One party's TLS identity: its own private key and the certificate of **every** party
/// (its own included), indexed by party id. Each peer is accepted only if it presents exactly the
/// certificate listed here for it.
pub struct TlsIdentity {
    party: usize,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        TlsIdentity { party: self.party, certs: self.certs.clone(), key: self.key.clone_key() }
    }
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("party", &self.party)
            .field("parties", &self.certs.len())
            .field("key", &"<private>")
            .finish()
    }
}

fn config_err(reason: impl Into<String>) -> NetError {
    NetError::Config { reason: reason.into() }
}

impl TlsIdentity {
    /// `certs_pem[i]` is party `i`'s certificate (PEM); `key_pem` is `party`'s private key (PEM).
    pub fn from_pem<S: AsRef<str>>(party: usize, certs_pem: &[S], key_pem: &str) -> Result<TlsIdentity, NetError> {
        if party >= certs_pem.len() {
            return Err(config_err(format!("party {party} out of range for {} certificates", certs_pem.len())));
        }
        let certs = certs_pem
            .iter()
            .enumerate()
            .map(|(i, pem)| {
                CertificateDer::from_pem_slice(pem.as_ref().as_bytes())
                    .map_err(|e| config_err(format!("certificate of party {i}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for i in 0..certs.len() {
            for j in 0..i {
                if certs[i] == certs[j] {
                    return Err(config_err(format!("parties {j} and {i} have the same certificate")));
                }
            }
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| config_err(format!("private key of party {party}: {e}")))?;
        let id = TlsIdentity { party, certs, key };
        // Fails if the key is unusable or does not belong to this party's certificate.
        id.server_config(party)?;
        Ok(id)
    }

    /// Reads `party{i}.crt` for every `i < parties` and `party{party}.key` from `dir`.
    /// The key file must not be readable by group or others (as `ssh` requires).
    pub fn load(dir: &Path, party: usize, parties: usize) -> Result<TlsIdentity, NetError> {
        let read = |p: PathBuf| fs::read_to_string(&p).map_err(|e| config_err(format!("{}: {e}", p.display())));
        let kp = key_path(dir, party);
        if !kp.exists() {
            return Err(config_err(format!(
                "{}: this party's private key is missing; make it on this machine with `cryptflow keygen --id {party} -o {}`",
                kp.display(),
                dir.display()
            )));
        }
        let certs = (0..parties)
            .map(|i| {
                let p = cert_path(dir, i);
                if !p.exists() {
                    return Err(config_err(format!(
                        "{}: the certificate of party {i} is missing; copy party{i}.crt from party {i} (made there by \
                         `cryptflow keygen --id {i}`) into {} and check its SHA-256 fingerprint with party {i}",
                        p.display(),
                        dir.display()
                    )));
                }
                read(p)
            })
            .collect::<Result<Vec<_>, _>>()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = fs::metadata(&kp).map_err(|e| config_err(format!("{}: {e}", kp.display())))?;
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(config_err(format!(
                    "{}: private key is accessible by others (mode {:o}); chmod 600 it",
                    kp.display(),
                    mode & 0o777
                )));
            }
        }
        let key = read(kp)?;
        TlsIdentity::from_pem(party, &certs, &key)
    }

    pub fn party(&self) -> usize {
        self.party
    }

    pub fn parties(&self) -> usize {
        self.certs.len()
    }

    /// DER bytes of the certificate pinned for `party`.
    pub fn certificate_der(&self, party: usize) -> Option<&[u8]> {
        self.certs.get(party).map(|c| c.as_ref())
    }

    fn pinned(&self, peer: usize) -> Result<Arc<PinnedPeer>, NetError> {
        let cert = self
            .certs
            .get(peer)
            .ok_or_else(|| config_err(format!("no certificate for party {peer}")))?
            .clone();
        Ok(Arc::new(PinnedPeer { peer, cert, algs: provider().signature_verification_algorithms }))
    }

    /// Client side of the link to `peer` (a lower id, which listens).
    pub(crate) fn client_config(&self, peer: usize) -> Result<Arc<rustls::ClientConfig>, NetError> {
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| config_err(format!("TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(self.pinned(peer)?)
            .with_client_auth_cert(vec![self.certs[self.party].clone()], self.key.clone_key())
            .map_err(|e| config_err(format!("TLS identity of party {}: {e}", self.party)))?;
        // Resumption would skip the certificate check on later connections: never resume.
        cfg.resumption = rustls::client::Resumption::disabled();
        cfg.enable_early_data = false;
        Ok(Arc::new(cfg))
    }

    /// Server side of the link to `peer` (a higher id, which connects).
    pub(crate) fn server_config(&self, peer: usize) -> Result<Arc<rustls::ServerConfig>, NetError> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| config_err(format!("TLS: {e}")))?
            .with_client_cert_verifier(self.pinned(peer)?)
            .with_single_cert(vec![self.certs[self.party].clone()], self.key.clone_key())
            .map_err(|e| config_err(format!("TLS identity of party {}: {e}", self.party)))?;
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
        cfg.max_early_data_size = 0;
        Ok(Arc::new(cfg))
    }
}

/// The name every party's certificate carries and the client asks for (SNI); the pinned
/// verifier ignores names, so this is informational only.
pub(crate) fn server_name(party: usize) -> ServerName<'static> {
    ServerName::try_from(format!("cryptflow-party-{party}")).expect("valid DNS name")
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Accepts exactly one end-entity certificate: the one pinned for `peer`. Used on both sides.
struct PinnedPeer {
    peer: usize,
    cert: CertificateDer<'static>,
    algs: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for PinnedPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PinnedPeer(party {})", self.peer)
    }
}

impl PinnedPeer {
    fn check(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> Result<(), rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() && intermediates.is_empty() {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
        }
    }
}

impl ServerCertVerifier for PinnedPeer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates).map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

impl ClientCertVerifier for PinnedPeer {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates).map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Explains a rustls error met while talking to `peer`.
pub(crate) fn describe(peer: usize, e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure) => {
            format!("party {peer} presented a certificate other than the one pinned for it")
        }
        rustls::Error::NoCertificatesPresented => format!("party {peer} presented no certificate"),
        rustls::Error::AlertReceived(alert) => {
            format!("party {peer} aborted the handshake with alert {alert:?} (it does not accept this party's certificate or parameters)")
        }
        other => format!("{other}"),
    }
}

/// A fresh self-signed certificate and private key for `party`, as `(cert_pem, key_pem)`.
///
/// The key is an ECDSA P-256 key drawn from the operating system's RNG; the certificate names
/// `cryptflow-party-{party}`. Nothing about it is derived from the party id except the names.
pub fn generate_identity(party: usize) -> Result<(String, String), NetError> {
    let err = |e: rcgen::Error| config_err(format!("key generation for party {party}: {e}"));
    let mut params = rcgen::CertificateParams::new(vec![format!("cryptflow-party-{party}")]).map_err(err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("CrypTFlow party {party}"));
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let cert = params.self_signed(&key).map_err(err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// `dir/party{party}.crt`
pub fn cert_path(dir: &Path, party: usize) -> PathBuf {
    dir.join(format!("party{party}.crt"))
}

/// `dir/party{party}.key`
pub fn key_path(dir: &Path, party: usize) -> PathBuf {
    dir.join(format!("party{party}.key"))
}

/// Writes `party{party}.crt` (mode 0644) and `party{party}.key` (mode 0600) into `dir`,
/// creating `dir` if needed and replacing existing files.
pub fn write_identity(dir: &Path, party: usize, cert_pem: &str, key_pem: &str) -> Result<(), NetError> {
    fs::create_dir_all(dir).map_err(|e| config_err(format!("{}: {e}", dir.display())))?;
    write_file(&cert_path(dir, party), cert_pem, 0o644)?;
    write_file(&key_path(dir, party), key_pem, 0o600)
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), NetError> {
    write_key_file(path, contents, mode).map_err(|e| config_err(format!("{}: {e}", path.display())))
}

/// Writes a key (or certificate) file with exactly `mode` as its permissions on Unix: any old
/// file is removed first, so that a new key never inherits an old file's wider permissions,
/// and the mode is set after creation, since the process umask may have narrowed it.
pub fn write_key_file(path: &Path, contents: &str, mode: u32) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// The SHA-256 fingerprint of a certificate (PEM), as colon-separated upper-case hex: what two
/// operators compare out of band to check that a copied `party{i}.crt` is the real one.
pub fn fingerprint(cert_pem: &str) -> Result<String, NetError> {
    use sha2::{Digest, Sha256};
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| config_err(format!("certificate: {e}")))?;
    let digest = Sha256::digest(der.as_ref());
    Ok(digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":"))
}

/// Generates one party's identity into `dir` (`keygen --id`): `party{party}.key` (mode 0600)
/// and `party{party}.crt`. Returns the certificate's [`fingerprint`]. The key never has to
/// leave the machine; the certificate goes to the other parties.
pub fn keygen_party(dir: &Path, party: usize) -> Result<String, NetError> {
    let (cert, key) = generate_identity(party)?;
    write_identity(dir, party, &cert, &key)?;
    fingerprint(&cert)
}

/// Generates identities for parties `0..parties` into `dir`, **every private key in one
/// folder**: for tests and single-machine runs only, since whoever holds the folder can
/// impersonate any party (a deployment uses [`keygen_party`] on each party's machine). Each
/// party then needs every `party{i}.crt` and only its own `party{i}.key`.
pub fn keygen(dir: &Path, parties: usize) -> Result<(), NetError> {
    for party in 0..parties {
        let (cert, key) = generate_identity(party)?;
        write_identity(dir, party, &cert, &key)?;
    }
    Ok(())
}
