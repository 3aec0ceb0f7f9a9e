//! Bytes in, by what the session is reading: a command line, a DATA upload, an upload being
//! discarded, an over-long line being discarded, or a SASL line.

use std::slice::Iter;

use smtp_proto::Error as ProtoError;
use smtp_proto::request::receiver::{DummyDataReceiver, DummyLineReceiver, LineReceiver, RequestReceiver};

use super::{Action, MAX_COMMAND_LINE, Session, Skip, State, decode};

impl Session {
    /// Feed received bytes; replies accumulate in `self.out`.
    pub(super) async fn ingest(&mut self, bytes: &[u8]) -> Action {
        let mut iter = bytes.iter();
        loop {
            let step = match self.state {
                State::Request(_) => self.ingest_command(&mut iter).await,
                State::Data(_) => self.ingest_data(&mut iter).await,
                State::SkipData(..) => self.skip_data(&mut iter),
                State::SkipLine(_) => self.skip_line(&mut iter),
                State::AuthPlain(_) | State::AuthLoginUser(_) | State::AuthLoginPass(..) => {
                    self.ingest_auth_line(&mut iter).await
                }
            };
            if let Some(action) = step {
                return action;
            }
        }
    }

    /// A command line. None: go on with the rest of the input.
    async fn ingest_command(&mut self, iter: &mut Iter<'_, u8>) -> Option<Action> {
        let State::Request(r) = &mut self.state else { return None };
        // Commands longer than MAX_COMMAND_LINE are refused whole, whether they came in one read
        // or several.
        let rest = iter.as_slice();
        let end = rest.iter().position(|b| *b == b'\n');
        let pending = r.buf().len();
        if pending + end.map_or(rest.len(), |p| p + 1) > MAX_COMMAND_LINE {
            r.buf().clear();
            let Some(p) = end else {
                self.state = State::SkipLine(DummyLineReceiver::default());
                return Some(Action::Continue);
            };
            *iter = rest[p + 1..].iter();
            self.reply(500, "5.5.2", "Line too long");
            self.errors += 1;
            if self.errors > self.ctx.cfg.max_errors {
                self.reply(421, "4.7.0", "Too many errors, closing connection");
                return Some(Action::Quit);
            }
            return None;
        }
        match r.ingest(iter) {
            Ok(req) => {
                let req = req.into_owned();
                match self.command(req).await {
                    Action::Continue => None,
                    // Bytes after STARTTLS are discarded (no command injection into TLS).
                    other => Some(other),
                }
            }
            Err(ProtoError::NeedsMoreData { .. }) => Some(Action::Continue),
            Err(e) => self.protocol_error(e).then_some(Action::Quit),
        }
    }

    /// Part of a DATA upload: the message is handed on at the dot; one over the size limit is
    /// read to its end and refused.
    async fn ingest_data(&mut self, iter: &mut Iter<'_, u8>) -> Option<Action> {
        let State::Data(d) = &mut self.state else { return None };
        if d.ingest(iter, &mut self.data) {
            self.state = State::Request(RequestReceiver::default());
            self.finish_data().await;
            return None;
        }
        if self.data.len() > self.ctx.cfg.max_message_bytes {
            let skip = DummyDataReceiver::new_data(d);
            self.data = Vec::new();
            self.state = State::SkipData(skip, Skip::TooLarge);
        }
        (iter.len() == 0).then_some(Action::Continue)
    }

    /// An upload being discarded (too large, or BDAT): refused at its end.
    fn skip_data(&mut self, iter: &mut Iter<'_, u8>) -> Option<Action> {
        let State::SkipData(d, why) = &mut self.state else { return None };
        if !d.ingest(iter) {
            return Some(Action::Continue);
        }
        match why {
            Skip::TooLarge => self.reply(552, "5.3.4", "Message is too long."),
            Skip::Bdat => self.reply(502, "5.5.1", "BDAT is not supported; use DATA."),
        }
        self.reset_transaction();
        self.state = State::Request(RequestReceiver::default());
        None
    }

    /// An over-long command line being discarded: refused at its end.
    fn skip_line(&mut self, iter: &mut Iter<'_, u8>) -> Option<Action> {
        let State::SkipLine(l) = &mut self.state else { return None };
        if !l.ingest(iter) {
            return Some(Action::Continue);
        }
        self.reply(500, "5.5.2", "Line too long");
        self.state = State::Request(RequestReceiver::default());
        None
    }

    /// A SASL line: PLAIN's response, LOGIN's user name or password, or `*` to cancel.
    async fn ingest_auth_line(&mut self, iter: &mut Iter<'_, u8>) -> Option<Action> {
        let (State::AuthPlain(l) | State::AuthLoginUser(l) | State::AuthLoginPass(l, _)) = &mut self.state else {
            return None;
        };
        if !l.ingest(iter) {
            return Some(Action::Continue);
        }
        let line = String::from_utf8_lossy(&l.buf).trim().to_string();
        let state = std::mem::replace(&mut self.state, State::Request(RequestReceiver::default()));
        if line == "*" {
            self.reply(501, "5.0.0", "Authentication cancelled");
            return None;
        }
        match state {
            State::AuthPlain(_) => self.auth_plain(&line).await,
            State::AuthLoginUser(_) => match decode(&line) {
                Some(user) => {
                    self.reply(334, "", "UGFzc3dvcmQ6");
                    self.state = State::AuthLoginPass(LineReceiver::new(()), user);
                }
                None => self.reply(501, "5.5.2", "Invalid base64 data"),
            },
            State::AuthLoginPass(_, user) => match decode(&line) {
                Some(pass) => self.check_login(&user, &pass).await,
                None => self.reply(501, "5.5.2", "Invalid base64 data"),
            },
            _ => {}
        }
        None
    }

    /// Reply to a line the parser rejected; true when the session should end.
    fn protocol_error(&mut self, e: ProtoError) -> bool {
        match e {
            ProtoError::UnknownCommand => self.reply(500, "5.5.1", "Unrecognized command"),
            ProtoError::InvalidSenderAddress => self.reply(501, "5.1.7", "Invalid sender address syntax"),
            ProtoError::InvalidRecipientAddress => self.reply(501, "5.1.3", "Invalid recipient address syntax"),
            ProtoError::SyntaxError { syntax } => {
                self.reply(501, "5.5.4", &format!("Syntax error, expected: {syntax}"))
            }
            ProtoError::InvalidParameter { param } => self.reply(501, "5.5.4", &format!("Invalid parameter {param}")),
            ProtoError::UnsupportedParameter { param } => {
                self.reply(504, "5.5.4", &format!("Unsupported parameter {param}"))
            }
            ProtoError::ResponseTooLong => {
                // The rest of the over-long line is discarded before the reply.
                self.state = State::SkipLine(DummyLineReceiver::default());
                self.errors += 1;
                return self.errors > self.ctx.cfg.max_errors;
            }
            ProtoError::NeedsMoreData { .. } | ProtoError::InvalidResponse { .. } => {
                self.reply(500, "5.5.1", "Unrecognized command")
            }
        }
        self.errors += 1;
        if self.errors > self.ctx.cfg.max_errors {
            self.reply(421, "4.7.0", "Too many errors, closing connection");
            return true;
        }
        false
    }
}
