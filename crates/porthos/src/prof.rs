//! Wall-time profile of the protocols, per party thread (Cargo feature `profile`; without it
//! every function here is a no-op that compiles away).
//!
//! A [`scope`] guard charges the wall time until it is dropped to its name, exclusively:
//! while a nested scope runs, the enclosing one is paused. Each party runs on its own thread,
//! so the thread-local totals are that party's; parallel work it hands to rayon is charged to
//! the scope that waits for it. [`take`] returns and clears the calling thread's totals.

#[cfg(feature = "profile")]
mod imp {
    use std::cell::RefCell;
    use std::time::Instant;

    #[derive(Default)]
    struct State {
        /// Open scopes: name, and the instant since which it is charged.
        stack: Vec<(&'static str, Instant)>,
        totals: Vec<(&'static str, f64, u64)>,
    }

    impl State {
        fn charge(&mut self, name: &'static str, seconds: f64, calls: u64) {
            match self.totals.iter_mut().find(|t| t.0 == name) {
                Some(t) => {
                    t.1 += seconds;
                    t.2 += calls;
                }
                None => self.totals.push((name, seconds, calls)),
            }
        }
    }

    thread_local! {
        static STATE: RefCell<State> = RefCell::new(State::default());
    }

    pub struct Scope(());

    pub fn scope(name: &'static str) -> Scope {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let now = Instant::now();
            if let Some(&(outer, since)) = s.stack.last() {
                s.charge(outer, (now - since).as_secs_f64(), 0);
            }
            s.stack.push((name, now));
        });
        Scope(())
    }

    impl Drop for Scope {
        fn drop(&mut self) {
            STATE.with(|s| {
                let mut s = s.borrow_mut();
                let now = Instant::now();
                if let Some((name, since)) = s.stack.pop() {
                    s.charge(name, (now - since).as_secs_f64(), 1);
                }
                if let Some(top) = s.stack.last_mut() {
                    top.1 = now;
                }
            });
        }
    }

    pub fn take() -> Vec<(&'static str, f64, u64)> {
        STATE.with(|s| std::mem::take(&mut s.borrow_mut().totals))
    }
}

#[cfg(not(feature = "profile"))]
mod imp {
    pub struct Scope;

    #[inline(always)]
    pub fn scope(_name: &'static str) -> Scope {
        Scope
    }

    pub fn take() -> Vec<(&'static str, f64, u64)> {
        Vec::new()
    }
}

pub use imp::{scope, take, Scope};

/// Whether the crate was built with the `profile` feature.
pub const ENABLED: bool = cfg!(feature = "profile");
