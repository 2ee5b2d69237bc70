//! The logins made ahead of need send the password only once another login proved it good.
//!
//! A command logs in all its connections at once (see `connect.rs`): with a wrong password
//! every one of those logins would fail, and servers and fail2ban count failed logins and ban a
//! client after a few (fail2ban's default: five). So the logins made ahead of need connect,
//! read the greeting, and wait until an operation's own login has succeeded (a right password
//! costs them about one round trip) or was refused for its credentials (then they fail with
//! that refusal, as does every later login of the pool, without sending the password). An
//! operation's own login never waits: over a wide-area link the round trip would slow every
//! command, and the operations that start together before the first refusal comes are few (two
//! for most commands), not one per connection. A login that fails for another reason (the
//! server full, the connection reset) lets the logins made ahead try too, one at a time.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use suppaftp::FtpResult;
use suppaftp::types::Response;

use super::{about_credentials, reply_code, server_full};
use crate::storage::ftp::control::{Entry, Gate, Stage};

/// The longest a login waits for another to prove the password.
const WAIT: Duration = Duration::from_secs(120);

/// What the pool knows of its password.
#[derive(Default)]
pub(super) struct Password {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    proof: Proof,
    /// Logins trying the password.
    trying: usize,
    /// A try failed for another reason than the password: logins made ahead may try too.
    failed: bool,
}

#[derive(Default)]
enum Proof {
    #[default]
    Unknown,
    Good,
    /// Refused, with this reply.
    Wrong(Response),
}

impl State {
    fn enter(&mut self, ahead: bool) -> Option<FtpResult<Entry>> {
        match &self.proof {
            Proof::Good => Some(Ok(Entry::Proven)),
            Proof::Wrong(reply) => Some(Err(suppaftp::FtpError::UnexpectedResponse(reply.clone()))),
            Proof::Unknown if ahead && (self.trying > 0 || !self.failed) => None,
            Proof::Unknown => {
                self.trying += 1;
                Some(Ok(Entry::Trying))
            }
        }
    }
}

impl Password {
    /// The gate for one login; `ahead`: one made ahead of need.
    pub(super) fn gate(&self, ahead: bool) -> Entrant<'_> {
        Entrant {
            password: self,
            ahead,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One login's way through [`Password`].
pub(super) struct Entrant<'a> {
    password: &'a Password,
    ahead: bool,
}

impl Gate for Entrant<'_> {
    fn try_enter(&self) -> Option<FtpResult<Entry>> {
        self.password.lock().enter(self.ahead)
    }

    fn enter(&self) -> FtpResult<Entry> {
        let since = Instant::now();
        let mut state = self.password.lock();
        loop {
            if let Some(entry) = state.enter(self.ahead) {
                return entry;
            }
            let Some(left) = WAIT.checked_sub(since.elapsed()) else {
                return Err(suppaftp::FtpError::ConnectionError(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "waited {} s for another login to the server to get through",
                        WAIT.as_secs()
                    ),
                )));
            };
            state = self
                .password
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn eager(&self) -> bool {
        !self.ahead
    }

    fn leave(&self, failure: Option<&(Stage, suppaftp::FtpError)>) {
        let mut state = self.password.lock();
        state.trying = state.trying.saturating_sub(1);
        match failure {
            None => state.proof = Proof::Good,
            Some((Stage::Login, suppaftp::FtpError::UnexpectedResponse(reply)))
                if refuses_credentials(reply) =>
            {
                state.proof = Proof::Wrong(reply.clone());
            }
            Some(_) => state.failed = true,
        }
        self.password.changed.notify_all();
    }
}

/// Whether a refused login says the credentials are wrong (or locked out): a 530 that does
/// not say the server is full, or a 421 that speaks of the credentials (a ban).
fn refuses_credentials(reply: &Response) -> bool {
    match reply_code(reply) {
        530 => !server_full(reply),
        421 => about_credentials(reply),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use suppaftp::Status;

    fn refusal(code: u32, text: &str) -> (Stage, suppaftp::FtpError) {
        let reply = Response::new(Status::from(code), format!("{code} {text}\r\n").into());
        (Stage::Login, suppaftp::FtpError::UnexpectedResponse(reply))
    }

    /// Logins made ahead wait until another login proved the password; an operation's own
    /// login never waits; a refusal for another reason lets one made ahead try; a wrong
    /// password fails every waiting and later login with its refusal.
    #[test]
    fn logins_made_ahead_wait_for_the_password_to_prove_good() {
        let password = Arc::new(Password::default());
        assert!(
            password.gate(true).try_enter().is_none(),
            "made ahead: waits"
        );
        let first = password.gate(false);
        assert!(matches!(first.try_enter(), Some(Ok(Entry::Trying))));
        let second = password.gate(false);
        assert!(
            matches!(second.try_enter(), Some(Ok(Entry::Trying))),
            "an operation's own login does not wait"
        );
        second.leave(Some(&refusal(421, "Too many connections from this IP.")));
        assert!(
            password.gate(true).try_enter().is_none(),
            "made ahead: waits while another tries"
        );
        let waiter = {
            let password = Arc::clone(&password);
            std::thread::spawn(move || password.gate(true).enter())
        };
        std::thread::sleep(Duration::from_millis(50));
        first.leave(Some(&refusal(421, "Too many connections from this IP.")));
        assert!(matches!(waiter.join().unwrap(), Ok(Entry::Trying)));
        first.leave(Some(&refusal(530, "Login incorrect.")));
        let Some(Err(suppaftp::FtpError::UnexpectedResponse(reply))) =
            password.gate(false).try_enter()
        else {
            panic!("the wrong password's refusal");
        };
        assert_eq!(reply_code(&reply), 530);
        assert!(password.gate(true).enter().is_err());

        let password = Password::default();
        let gate = password.gate(false);
        assert!(matches!(gate.enter(), Ok(Entry::Trying)));
        gate.leave(None);
        assert!(matches!(
            password.gate(true).try_enter(),
            Some(Ok(Entry::Proven))
        ));
    }
}
