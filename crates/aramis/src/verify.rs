//! Signature verification off the critical path.
//!
//! A received message is checked at once for everything cheap (envelope, addressing, session,
//! counter, digest) and handed to the protocol; its signature goes to a verifier thread, which
//! verifies whatever has accumulated in one `verify_batch` call. Before this party sends
//! anything, passes an output gate or releases an output, it waits until every signature it
//! received so far has been verified ([`Verifier::wait_all`]). Everything that leaves an honest
//! party is therefore computed from verified messages only, as `pi*` requires (paper V-B, step
//! 3: the next message is computed only from a valid transcript); the protocol's local work on a
//! message that turns out to be forged is thrown away with the abort.

use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use ed25519_dalek::{Signature, VerifyingKey};


/// Largest number of signatures verified in one batch.
const MAX_BATCH: usize = 64;

pub(crate) struct Job {
    pub from: usize,
    /// Counter of the flight's first message and number of messages (for the report).
    pub counter: u64,
    pub len: u64,
    pub statement: Vec<u8>,
    pub signature: Signature,
    pub key: VerifyingKey,
}

impl Job {
    pub fn verify(&self) -> bool {
        self.key.verify_strict(&self.statement, &self.signature).is_ok()
    }
}

/// The message whose signature failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rejected {
    pub from: usize,
    pub counter: u64,
    pub len: u64,
}

#[derive(Default)]
struct State {
    done: u64,
    rejected: Option<Rejected>,
    batches: u64,
}

pub(crate) struct Verifier {
    tx: Option<Sender<Job>>,
    shared: Arc<(Mutex<State>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    submitted: u64,
}

impl Verifier {
    /// Starts the verifier thread; `None` if no thread can be started (verify inline then).
    pub fn start() -> Option<Verifier> {
        let (tx, rx) = channel::<Job>();
        let shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("aramis-verify".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(j) => batch.push(j),
                            Err(_) => break,
                        }
                    }
                    let all_good = if batch.len() == 1 {
                        batch[0].verify()
                    } else {
                        let messages: Vec<&[u8]> = batch.iter().map(|j| &j.statement[..]).collect();
                        let signatures: Vec<Signature> = batch.iter().map(|j| j.signature).collect();
                        let keys: Vec<VerifyingKey> = batch.iter().map(|j| j.key).collect();
                        ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
                    };
                    // A failed batch is re-checked one by one to find the culprit.
                    let rejected = if all_good { None } else { batch.iter().find(|j| !j.verify()) };
                    let (lock, cvar) = &*sh;
                    let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
                    st.done += batch.len() as u64;
                    st.batches += 1;
                    if st.rejected.is_none() {
                        st.rejected = rejected.map(|j| Rejected { from: j.from, counter: j.counter, len: j.len });
                    }
                    cvar.notify_all();
                }
            })
            .ok()?;
        Some(Verifier { tx: Some(tx), shared, thread: Some(thread), submitted: 0 })
    }

    pub fn submit(&mut self, job: Job) {
        self.submitted += 1;
        if let Some(tx) = &self.tx {
            if let Err(e) = tx.send(job) {
                // The thread is gone (it cannot panic short of a bug): verify here instead.
                let job = e.0;
                let (lock, cvar) = &*self.shared;
                let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
                st.done += 1;
                if !job.verify() && st.rejected.is_none() {
                    st.rejected = Some(Rejected { from: job.from, counter: job.counter, len: job.len });
                }
                cvar.notify_all();
            }
        }
    }

    /// Waits until every submitted signature has been verified; the first bad one, if any.
    pub fn wait_all(&self) -> Result<(), Rejected> {
        let (lock, cvar) = &*self.shared;
        let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = st.rejected {
                return Err(r);
            }
            if st.done >= self.submitted {
                return Ok(());
            }
            st = cvar.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Batches verified so far.
    pub fn batches(&self) -> u64 {
        self.shared.0.lock().unwrap_or_else(|e| e.into_inner()).batches
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
