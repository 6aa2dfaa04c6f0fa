//! A client refused at connect. RFC 5321 §3.1: the server answers 554 instead of its
//! banner and then waits for QUIT, answering 503 to anything else. A client that saw the
//! connection drop after the 554 would take it for a network failure and try again; one
//! that gets its QUIT answered bounces the mail, and the sender hears why.

use super::reply::At;
use super::{wait_client, End, Session, Wait};
use crate::mail::Reply;
use crate::smtp::command::{self, Command};
use crate::smtp::conn::Line;
use tokio::time::Instant;

const REFUSED: &str = "refused at connect";

impl Session {
    /// Answers the refused client's commands until it quits, for at most
    /// `refused_quit_wait` and `errors_before_disconnect` commands; then closes without a
    /// further reply (it has its refusal).
    pub(super) async fn wait_for_quit_after_refusal(&mut self) -> End {
        let wait = self.limits().refused_quit_wait;
        let deadline = (Instant::now() + wait).min(self.deadline);
        let max_line = self.limits().command_line_bytes;
        for _ in 0..self.limits().errors_before_disconnect {
            let read = self.conn.read_line(max_line, deadline);
            let line = match wait_client(&self.handle, &self.server, true, read).await {
                Wait::Ready(Ok(line)) => line,
                Wait::Ready(Err(_)) | Wait::Shutdown | Wait::Evicted => {
                    return End::Closed(REFUSED)
                }
            };
            let quit = match line {
                Line::Complete(line) | Line::BareLf(line) => {
                    matches!(command::parse(&line), Ok(Command::Quit))
                }
                Line::TooLong(_) => false,
            };
            let reply = if quit {
                Reply::new(221, "2.0.0", "Bye")
            } else {
                Reply::new(
                    503,
                    "5.5.1",
                    "Bad sequence of commands: this server refused the connection, send QUIT",
                )
            };
            self.count_reply(At::Other, &reply);
            self.conn.queue(&reply.to_wire());
            let flushed = self.conn.flush(deadline).await;
            if quit || flushed.is_err() {
                return End::Closed(REFUSED);
            }
        }
        self.limit_hit("errors");
        End::Closed(REFUSED)
    }
}
