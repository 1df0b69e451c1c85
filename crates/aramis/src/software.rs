//! A software implementation of the attestation interface, **without any hardware guarantee**.
//!
//! * The measurement is SHA-256 over the bytes of the running binary
//!   (`std::env::current_exe()`) and the protocol configuration.
//! * Commit draws a fresh Ed25519 key from the operating system's RNG and has the *attestation
//!   authority* sign the claims (measurement, key, session, party). In distributed runs every
//!   party has its own authority key, made on its machine by `cryptflow keygen --id I`
//!   (`party{I}.authority.key`, which never leaves it, and `party{I}.authority.pub`, copied to
//!   the other parties like its certificate): a token claiming party `I` must verify under
//!   `party{I}.authority.pub` ([`SoftwareAttestor::load_party`]). A single authority shared by
//!   every party (`authority.key`, `authority.pub`; [`SoftwareAttestor::load`]) remains for
//!   local tests: whoever holds that key can mint a token for any party.
//!
//! What this proves: the Aramis mechanism end to end (tokens, measurements, per-message
//! signatures, counters, aborts), and that a party running *this* code with *this*
//! configuration and an honest host is accepted while any deviation by a host that leaves the
//! code and keys alone is caught. What it does not prove: anything about a host that is
//! actually malicious. The signing key lives in ordinary process memory, so the host can sign
//! whatever it likes with it; the measured binary can be replaced after it was hashed; and
//! a party holds its authority's private key (it must, to endorse its own token), so it can
//! mint a token for any measurement of its own (with a shared authority, of any party's). The role of the authority is played by the
//! hardware vendor's attestation service on real hardware (see `docs/aramis.md`).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::attest::{hex, unhex, AttestError, Attestor, Claims, Execution, Measurement, SessionId, Token};

/// File names written by [`generate_authority`] next to the parties' TLS keys.
pub const AUTHORITY_KEY_FILE: &str = "authority.key";
pub const AUTHORITY_PUB_FILE: &str = "authority.pub";

/// `dir/party{id}.authority.key`: party `id`'s own attestation authority key (private, 0600).
pub fn party_authority_key_path(dir: &Path, id: usize) -> PathBuf {
    dir.join(format!("party{id}.{AUTHORITY_KEY_FILE}"))
}

/// `dir/party{id}.authority.pub`: the public half, which every other party holds.
pub fn party_authority_pub_path(dir: &Path, id: usize) -> PathBuf {
    dir.join(format!("party{id}.{AUTHORITY_PUB_FILE}"))
}

const KEY_HEADER: &str = "cryptflow-aramis attestation authority signing key (Ed25519 seed, hex; SOFTWARE ATTESTOR, NO HARDWARE GUARANTEE)";
const PUB_HEADER: &str = "cryptflow-aramis attestation authority verification key (Ed25519, hex)";

fn unavailable(reason: impl Into<String>) -> AttestError {
    AttestError::Unavailable(reason.into())
}

/// 32 bytes from the operating system's RNG.
pub(crate) fn os_random32() -> Result<[u8; 32], AttestError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| unavailable(format!("operating system randomness unavailable: {e}")))?;
    Ok(b)
}

/// SHA-256 of the running binary, computed once per process.
pub fn binary_digest() -> Result<[u8; 32], AttestError> {
    static DIGEST: OnceLock<Result<[u8; 32], AttestError>> = OnceLock::new();
    DIGEST
        .get_or_init(|| {
            let exe = std::env::current_exe().map_err(|e| unavailable(format!("cannot locate the running binary: {e}")))?;
            let bytes = fs::read(&exe).map_err(|e| unavailable(format!("cannot read {}: {e}", exe.display())))?;
            Ok(Sha256::digest(&bytes).into())
        })
        .clone()
}

/// `H(g)` for code digest `code` and protocol `configuration`.
pub fn measurement_of(code: &[u8; 32], configuration: &[u8]) -> Measurement {
    let mut h = Sha256::new();
    h.update(b"cryptflow-aramis/measurement/v1\0");
    h.update(code);
    h.update((configuration.len() as u64).to_le_bytes());
    h.update(configuration);
    Measurement(h.finalize().into())
}

/// The software attestor (see the module documentation for what it does not guarantee).
#[derive(Clone)]
pub struct SoftwareAttestor {
    /// The authority's signing key; `None` for a verifier that cannot commit.
    authority: Option<SigningKey>,
    authority_public: VerifyingKey,
    /// Per-party authorities: a token claiming party `i` must verify under `endorsers[i]`
    /// (`None`: every token under `authority_public`).
    endorsers: Option<Vec<VerifyingKey>>,
    /// SHA-256 of the code this party runs.
    code: [u8; 32],
}

impl std::fmt::Debug for SoftwareAttestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareAttestor")
            .field("authority", &hex(self.authority_public.as_bytes()))
            .field("code", &hex(&self.code))
            .finish_non_exhaustive()
    }
}

struct SoftwareExecution {
    key: SigningKey,
}

impl Execution for SoftwareExecution {
    fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    fn sign_output(&mut self, y: &[u8]) -> Signature {
        self.key.sign(y)
    }
}

impl SoftwareAttestor {
    /// An attestor for code with digest `code`, endorsing with `authority`.
    pub fn new(authority: SigningKey, code: [u8; 32]) -> SoftwareAttestor {
        let authority_public = authority.verifying_key();
        SoftwareAttestor { authority: Some(authority), authority_public, endorsers: None, code }
    }

    /// Party `id`'s attestor for a distributed run with per-party authorities: its own
    /// `party{id}.authority.key` (0600) endorses its token, and every party's
    /// `party{j}.authority.pub` checks the tokens claiming party `j`.
    pub fn load_party(dir: &Path, id: usize, parties: usize) -> Result<SoftwareAttestor, AttestError> {
        let key_path = party_authority_key_path(dir, id);
        check_private(&key_path)?;
        let key = SigningKey::from_bytes(&read_hex32(&key_path, KEY_HEADER)?);
        let mut endorsers = Vec::with_capacity(parties);
        for j in 0..parties {
            let path = party_authority_pub_path(dir, j);
            if !path.exists() {
                return Err(unavailable(format!(
                    "{} is missing: party {j} makes it with `cryptflow keygen --id {j}` on its machine and every party copies it into its keys folder",
                    path.display()
                )));
            }
            endorsers.push(read_public_key(&path)?);
        }
        if endorsers[id] != key.verifying_key() {
            return Err(unavailable(format!("{} and {} are not a key pair", key_path.display(), party_authority_pub_path(dir, id).display())));
        }
        let mut a = SoftwareAttestor::for_running_binary(key)?;
        a.endorsers = Some(endorsers);
        Ok(a)
    }

    /// Whether every party's tokens are endorsed by one shared authority key.
    pub fn shared_authority(&self) -> bool {
        self.endorsers.is_none()
    }

    /// An attestor for the running binary.
    pub fn for_running_binary(authority: SigningKey) -> Result<SoftwareAttestor, AttestError> {
        Ok(SoftwareAttestor::new(authority, binary_digest()?))
    }

    /// The running binary with a fresh, throw-away authority: for runs with every party in one
    /// process, where there is nobody to convince.
    pub fn ephemeral() -> Result<SoftwareAttestor, AttestError> {
        SoftwareAttestor::for_running_binary(SigningKey::from_bytes(&os_random32()?))
    }

    /// Reads `authority.key` (which must not be readable by group or others) and
    /// `authority.pub` from `dir` and attests the running binary.
    pub fn load(dir: &Path) -> Result<SoftwareAttestor, AttestError> {
        let (key, public) = load_authority(dir)?;
        if key.verifying_key() != public {
            return Err(unavailable(format!(
                "{} and {} in {} are not a key pair",
                AUTHORITY_KEY_FILE,
                AUTHORITY_PUB_FILE,
                dir.display()
            )));
        }
        SoftwareAttestor::for_running_binary(key)
    }

    /// **Fault injection**: the same attestor, measuring a different code digest, as a party
    /// running a modified binary would be measured (`--inject-fault PARTY:wrong-code`).
    pub fn simulating_different_code(mut self) -> SoftwareAttestor {
        let mut h = Sha256::new();
        h.update(b"cryptflow-aramis/simulated-modified-binary\0");
        h.update(self.code);
        self.code = h.finalize().into();
        self
    }

    pub fn authority_public(&self) -> VerifyingKey {
        self.authority_public
    }

    pub fn code_digest(&self) -> [u8; 32] {
        self.code
    }
}

impl Attestor for SoftwareAttestor {
    fn describe(&self) -> String {
        format!(
            "software attestor (NO hardware guarantee): binary SHA-256 {}..., authority {}...",
            &hex(&self.code)[..16],
            &hex(self.authority_public.as_bytes())[..16]
        )
    }

    fn measure(&self, configuration: &[u8]) -> Result<Measurement, AttestError> {
        Ok(measurement_of(&self.code, configuration))
    }

    fn commit(
        &self,
        configuration: &[u8],
        session: SessionId,
        party: usize,
        parties: usize,
    ) -> Result<(Box<dyn Execution>, Token), AttestError> {
        let authority = self.authority.as_ref().ok_or_else(|| unavailable("this attestor holds no authority key"))?;
        let key = SigningKey::from_bytes(&os_random32()?);
        let claims = Claims {
            measurement: self.measure(configuration)?,
            key: key.verifying_key().to_bytes(),
            session,
            party: party as u32,
            parties: parties as u32,
        };
        let evidence = authority.sign(&claims.to_bytes()).to_bytes().to_vec();
        Ok((Box::new(SoftwareExecution { key }), Token { claims, evidence }))
    }

    fn verify(&self, token: &Token) -> Result<Claims, AttestError> {
        let public = match &self.endorsers {
            None => &self.authority_public,
            Some(keys) => keys.get(token.claims.party as usize).ok_or_else(|| {
                AttestError::BadEvidence(format!("a token claiming party {}, in a session of {}", token.claims.party, keys.len()))
            })?,
        };
        let sig: [u8; 64] = token
            .evidence
            .as_slice()
            .try_into()
            .map_err(|_| AttestError::BadEvidence(format!("{} bytes of evidence, expected a 64-byte signature", token.evidence.len())))?;
        public.verify_strict(&token.claims.to_bytes(), &Signature::from_bytes(&sig)).map_err(|_| {
            AttestError::BadEvidence(match self.endorsers {
                None => "not signed by the attestation authority".into(),
                Some(_) => format!("not signed by party {}'s attestation authority", token.claims.party),
            })
        })?;
        Ok(token.claims)
    }
}

/// `dir/authority.key`
pub fn authority_key_path(dir: &Path) -> PathBuf {
    dir.join(AUTHORITY_KEY_FILE)
}

/// `dir/authority.pub`
pub fn authority_pub_path(dir: &Path) -> PathBuf {
    dir.join(AUTHORITY_PUB_FILE)
}

/// Makes a fresh attestation-authority key pair (OS RNG) and writes `authority.key` (mode 0600)
/// and `authority.pub` (0644) into `dir`, replacing existing files: one authority shared by every
/// party (local tests).
pub fn generate_authority(dir: &Path) -> Result<VerifyingKey, AttestError> {
    write_key_pair(&authority_key_path(dir), &authority_pub_path(dir))
}

/// Party `id`'s own authority: `party{id}.authority.key` (0600) and `party{id}.authority.pub`.
pub fn generate_party_authority(dir: &Path, id: usize) -> Result<VerifyingKey, AttestError> {
    write_key_pair(&party_authority_key_path(dir, id), &party_authority_pub_path(dir, id))
}

fn write_key_pair(key_path: &Path, pub_path: &Path) -> Result<VerifyingKey, AttestError> {
    let key = SigningKey::from_bytes(&os_random32()?);
    if let Some(dir) = key_path.parent() {
        fs::create_dir_all(dir).map_err(|e| unavailable(format!("{}: {e}", dir.display())))?;
    }
    write_file(key_path, &format!("{KEY_HEADER}\n{}\n", hex(key.as_bytes())), 0o600)?;
    let public = key.verifying_key();
    write_file(pub_path, &format!("{PUB_HEADER}\n{}\n", hex(public.as_bytes())), 0o644)?;
    Ok(public)
}

fn check_private(key_path: &Path) -> Result<(), AttestError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(key_path).map_err(|e| unavailable(format!("cannot read {}: {e}", key_path.display())))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(unavailable(format!(
                "{} is readable by group or others (mode {:o}); it must be 0600",
                key_path.display(),
                meta.permissions().mode() & 0o777
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = key_path;
    Ok(())
}

fn read_public_key(path: &Path) -> Result<VerifyingKey, AttestError> {
    VerifyingKey::from_bytes(&read_hex32(path, PUB_HEADER)?).map_err(|_| unavailable(format!("{}: not an Ed25519 public key", path.display())))
}

fn read_hex32(path: &Path, header: &str) -> Result<[u8; 32], AttestError> {
    let text = fs::read_to_string(path).map_err(|e| unavailable(format!("cannot read {}: {e}", path.display())))?;
    let mut lines = text.lines();
    if lines.next() != Some(header) {
        return Err(unavailable(format!("{} is not a cryptflow-aramis authority file", path.display())));
    }
    lines
        .next()
        .and_then(unhex)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| unavailable(format!("{}: malformed key", path.display())))
}

/// Reads the authority key pair from `dir`.
pub fn load_authority(dir: &Path) -> Result<(SigningKey, VerifyingKey), AttestError> {
    let key_path = authority_key_path(dir);
    check_private(&key_path)?;
    let key = SigningKey::from_bytes(&read_hex32(&key_path, KEY_HEADER)?);
    let public = load_authority_public(dir)?;
    Ok((key, public))
}

/// Reads `dir/authority.pub`.
pub fn load_authority_public(dir: &Path) -> Result<VerifyingKey, AttestError> {
    read_public_key(&authority_pub_path(dir))
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), AttestError> {
    cryptflow_net::write_key_file(path, contents, mode).map_err(|e| unavailable(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attestor(seed: u8, code: u8) -> SoftwareAttestor {
        SoftwareAttestor::new(SigningKey::from_bytes(&[seed; 32]), [code; 32])
    }

    #[test]
    fn tokens_verify_under_their_authority_only() {
        let a = attestor(1, 5);
        let (exec, token) = a.commit(b"cfg", SessionId([4; 16]), 1, 3).unwrap();
        let claims = a.verify(&token).unwrap();
        assert_eq!(claims.key, exec.verifying_key().to_bytes());
        assert_eq!(claims.measurement, a.measure(b"cfg").unwrap());
        assert_eq!((claims.party, claims.parties, claims.session), (1, 3, SessionId([4; 16])));
        // Another authority, or any change to the claims, is refused.
        assert!(attestor(2, 5).verify(&token).is_err());
        let mut forged = token.clone();
        forged.claims.measurement = Measurement([0; 32]);
        assert!(a.verify(&forged).is_err());
        let mut forged = token;
        forged.claims.party = 2;
        assert!(a.verify(&forged).is_err());
    }

    #[test]
    fn measurements_depend_on_code_and_configuration() {
        let a = attestor(1, 5);
        assert_eq!(a.measure(b"x").unwrap(), attestor(9, 5).measure(b"x").unwrap());
        assert_ne!(a.measure(b"x").unwrap(), a.measure(b"y").unwrap());
        assert_ne!(a.measure(b"x").unwrap(), attestor(1, 6).measure(b"x").unwrap());
        let b = attestor(1, 5).simulating_different_code();
        assert_ne!(a.measure(b"x").unwrap(), b.measure(b"x").unwrap());
    }

    #[test]
    fn every_commit_has_a_fresh_key() {
        let a = attestor(1, 5);
        let (_, t1) = a.commit(b"cfg", SessionId([4; 16]), 0, 3).unwrap();
        let (_, t2) = a.commit(b"cfg", SessionId([4; 16]), 0, 3).unwrap();
        assert_ne!(t1.claims.key, t2.claims.key);
    }

    #[test]
    fn authority_files_round_trip_and_the_key_must_be_private() {
        let dir = std::env::temp_dir().join(format!("aramis-authority-{}", std::process::id()));
        let public = generate_authority(&dir).unwrap();
        let (key, read_public) = load_authority(&dir).unwrap();
        assert_eq!((key.verifying_key(), read_public), (public, public));
        assert_eq!(load_authority_public(&dir).unwrap(), public);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(authority_key_path(&dir), fs::Permissions::from_mode(0o644)).unwrap();
            let err = load_authority(&dir).unwrap_err().to_string();
            assert!(err.contains("0600"), "{err}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn per_party_authorities_endorse_only_their_own_party() {
        let dir = std::env::temp_dir().join(format!("aramis-party-authority-{}", std::process::id()));
        for id in 0..3 {
            generate_party_authority(&dir, id).unwrap();
        }
        let a: Vec<SoftwareAttestor> = (0..3).map(|id| SoftwareAttestor::load_party(&dir, id, 3).unwrap()).collect();
        assert!(!a[0].shared_authority());
        // Party 1's token verifies at every party.
        let (_, token) = a[1].commit(b"cfg", SessionId([4; 16]), 1, 3).unwrap();
        for v in &a {
            assert_eq!(v.verify(&token).unwrap().party, 1);
        }
        // Party 1 cannot endorse a token claiming party 2: its authority is not party 2's.
        let (_, forged) = a[1].commit(b"cfg", SessionId([4; 16]), 2, 3).unwrap();
        let err = a[0].verify(&forged).unwrap_err().to_string();
        assert!(err.contains("party 2's attestation authority"), "{err}");
        // A missing public key says who makes it.
        fs::remove_file(party_authority_pub_path(&dir, 2)).unwrap();
        let err = SoftwareAttestor::load_party(&dir, 0, 3).unwrap_err().to_string();
        assert!(err.contains("keygen --id 2"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_running_binary_is_measured() {
        let d = binary_digest().unwrap();
        assert_eq!(d, binary_digest().unwrap());
        assert_ne!(d, [0; 32]);
    }
}
