//! The task's side of replies (session/outbox.rs says how they travel): a reply is kept
//! before anything else, whatever the phase, and goes out on a link that takes it.

use super::{lost, send, At, Handled, Link, LinkEnd, SessionTask};
use crate::protocol::{ClientFrame, Person, SendTalk, Sent, ServerError};
use crate::session::outbox::{Answer, Outgoing, Reply, ReplyError, SendFailure};
use crate::session::{Command, SessionEvent};
use crate::untrusted::untrusted;

impl SessionTask {
    /// [`on_command`](SessionTask::on_command), and a reply kept in the outbox (then, on
    /// a link, [`Handled::Flush`] sends it).
    pub(super) async fn command(&mut self, cmd: Option<Command>, at: At<'_>) -> Handled {
        match self.on_command(cmd, at) {
            Handled::Reply { to, text, done } => {
                let _ = done.send(self.queue_reply(to, text).await);
                match at {
                    At::Linked => Handled::Flush,
                    _ => Handled::Stay,
                }
            }
            handled => handled,
        }
    }

    /// Keeps a reply of the signed-in user's, queued; its row in the history.
    async fn queue_reply(&mut self, to: Person, text: String) -> Result<i64, ReplyError> {
        crate::session::outbox::check_text(&text)?;
        let server = self.credentials.as_ref().ok_or(ReplyError::SignedOut)?.server.clone();
        if self.offers_send == Some(false) {
            return Err(ReplyError::NotOffered);
        }
        let me = match (&self.welcomed, self.user_id()) {
            (Some(p), _) => p.clone(),
            (None, Some(id)) => Person { id, name: String::new() },
            (None, None) => return Err(ReplyError::UnknownUser),
        };
        let reply = Reply { id: uuid::Uuid::new_v4().to_string(), to, talk: text };
        let row = self.store.queue_reply(&server, &me, &reply).await.map_err(ReplyError::Store)?;
        self.emit(SessionEvent::Reply { row, outgoing: Outgoing::Queued });
        Ok(row)
    }

    /// Whether the server takes replies, as its welcome said (or its lack of one):
    /// readers see it at once.
    pub(super) fn set_offers_send(&mut self, offers: Option<bool>) {
        self.offers_send = offers;
        let replies = offers == Some(true);
        self.now.send_if_modified(|now| {
            let changed = now.replies != replies;
            now.replies = replies;
            changed
        });
    }

    /// Sends the queued replies this link has not sent yet, oldest first; on a link that
    /// takes none, they fail. `Err`: the socket failed.
    pub(super) async fn flush_outbox(&mut self, ws: &mut super::Ws, link: &mut Link) -> Result<(), LinkEnd> {
        let (Some(creds), Some(me)) = (self.credentials.clone(), self.user_id()) else { return Ok(()) };
        let queued = match self.store.outbox(&creds.server, &me).await {
            Ok(queued) => queued,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the outbox; replies wait for the next link");
                return Ok(());
            }
        };
        for q in queued {
            if !link.takes_replies {
                let message = crate::i18n::t(crate::i18n::Msg::ReplyFailedNotOffered);
                self.answered(&q.reply.id, Outgoing::Failed { reason: SendFailure::NotOffered, message }, None).await;
                continue;
            }
            if !link.in_flight.insert(q.reply.id.clone()) {
                continue;
            }
            let frame = ClientFrame::Send(SendTalk { id: q.reply.id, to: q.reply.to.id, talk: q.reply.talk });
            send(ws, frame.to_text(), link.timing.heartbeat_timeout)
                .await
                .map_err(|e| LinkEnd::Failed(lost("could not send a reply", e)))?;
        }
        Ok(())
    }

    /// The server has the reply.
    pub(super) async fn on_sent(&mut self, sent: Sent) {
        self.answered(&sent.id, Outgoing::Sent, Some(sent.ts)).await;
    }

    /// The server refused the reply `id`: for good, or for now (it stays queued and goes
    /// again on the next link).
    pub(super) async fn on_send_error(&mut self, error: &ServerError) {
        let Some(id) = error.id.as_deref() else { return };
        match Answer::of_code(&error.code) {
            Answer::TryAgain => {
                tracing::info!(code = %untrusted(&error.code), "the server cannot take a reply now; it is sent again on the next link");
            }
            Answer::Failed(reason) => {
                let outcome = Outgoing::Failed { reason, message: error.message.clone() };
                self.answered(id, outcome, None).await;
            }
        }
    }

    /// Keeps where reply `id` stands, and tells the subscribers.
    async fn answered(&mut self, id: &str, outgoing: Outgoing, ts: Option<i64>) {
        match self.store.reply_done(id, &outgoing, ts).await {
            Ok(Some(row)) => self.emit(SessionEvent::Reply { row, outgoing }),
            // Answered before (a retry's second answer), or not ours.
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot keep a reply's answer; it is sent again on the next link"),
        }
    }
}
