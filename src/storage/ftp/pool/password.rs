//! One login at a time sends the password until one has proved it good.
//!
//! A command logs in all its connections at once (see `connect.rs`), and several operations
//! start together: with a wrong password every one of those logins would fail, and servers and
//! fail2ban count failed logins and ban a client after a few (fail2ban's default: five). So
//! until a login has succeeded, the first to be ready sends the password and the others wait
//! (having connected, and read the greeting, meanwhile): a right password then costs them about
//! one round trip, a wrong one costs one failed login per command, and every waiting login
//! fails with that login's refusal. A login that fails for another reason (the server full,
//! the connection reset) hands the try to the next.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use suppaftp::types::Response;

use super::{reply_code, server_full};
use crate::storage::ftp::control::{Entry, Gate, Stage};

/// The longest a login waits for another to prove the password.
const WAIT: Duration = Duration::from_secs(120);

#[derive(Default)]
pub(super) struct Password {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    proof: Proof,
    /// A login is trying the password.
    trying: bool,
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
    fn enter(&mut self) -> Option<suppaftp::FtpResult<Entry>> {
        match &self.proof {
            Proof::Good => Some(Ok(Entry::Proven)),
            Proof::Wrong(reply) => Some(Err(suppaftp::FtpError::UnexpectedResponse(reply.clone()))),
            Proof::Unknown if self.trying => None,
            Proof::Unknown => {
                self.trying = true;
                Some(Ok(Entry::Trying))
            }
        }
    }
}

impl Gate for Password {
    fn try_enter(&self) -> Option<suppaftp::FtpResult<Entry>> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .enter()
    }

    fn enter(&self) -> suppaftp::FtpResult<Entry> {
        let since = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(entry) = state.enter() {
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
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn leave(&self, failure: Option<&(Stage, suppaftp::FtpError)>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.trying = false;
        match failure {
            None => state.proof = Proof::Good,
            Some((Stage::Login, suppaftp::FtpError::UnexpectedResponse(reply)))
                if refuses_credentials(reply) =>
            {
                state.proof = Proof::Wrong(reply.clone());
            }
            Some(_) => {}
        }
        self.changed.notify_all();
    }
}

/// Whether a refused login says the credentials are wrong (or locked out): a 530 that does
/// not say the server is full, or a 421 that speaks of the credentials (a ban).
fn refuses_credentials(reply: &Response) -> bool {
    match reply_code(reply) {
        530 => !server_full(reply),
        421 => super::about_credentials(reply),
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

    /// The first login tries the password, the others wait; a refusal for another reason hands
    /// the try on, a wrong password fails every waiting login with its refusal.
    #[test]
    fn one_login_at_a_time_tries_the_password() {
        let gate = Arc::new(Password::default());
        assert!(matches!(gate.try_enter(), Some(Ok(Entry::Trying))));
        assert!(gate.try_enter().is_none(), "another is trying");
        let waiter = {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || gate.enter())
        };
        std::thread::sleep(Duration::from_millis(50));
        gate.leave(Some(&refusal(421, "Too many connections from this IP.")));
        assert!(matches!(waiter.join().unwrap(), Ok(Entry::Trying)));
        gate.leave(Some(&refusal(530, "Login incorrect.")));
        let Some(Err(suppaftp::FtpError::UnexpectedResponse(reply))) = gate.try_enter() else {
            panic!("the wrong password's refusal");
        };
        assert_eq!(reply_code(&reply), 530);
        assert!(gate.enter().is_err());

        let gate = Password::default();
        assert!(matches!(gate.enter(), Ok(Entry::Trying)));
        gate.leave(None);
        assert!(matches!(gate.try_enter(), Some(Ok(Entry::Proven))));
    }
}
