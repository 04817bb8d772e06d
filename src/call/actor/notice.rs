//! The executor of [`NoticeEffect`]s: the end-of-call notice, queued through
//! [`super::EndOfCall`] and confirmed back to the machine.

use actix::prelude::*;

use super::{feeder, CallActor};
use crate::call::machine::{CallMachine, NoticeEffect, Observation};

impl CallActor {
    /// Queues the end-of-call notice and, once it is queued, tells the machine
    /// ([`Observation::Notified`]); a failure is asked again by the machine's deadline.
    pub(super) fn carry_out_notice(
        &mut self,
        effect: NoticeEffect,
        machine: &CallMachine,
        span: tracing::Span,
        ctx: &mut Context<Self>,
    ) {
        use tracing::Instrument;
        let feed = feeder(ctx);
        let call_id = self.call_id.clone();
        match effect {
            NoticeEffect::NotifyEnded => {
                let Some(notifier) = self.deps.end_of_call.clone() else {
                    // Nothing to send: the call is settled.
                    actix::spawn(async move {
                        feed(Observation::Notified).await;
                    });
                    return;
                };
                let machine = machine.clone();
                actix::spawn(
                    async move {
                        match notifier.call_ended(&machine).await {
                            Ok(()) => {
                                feed(Observation::Notified).await;
                            }
                            Err(e) => {
                                tracing::error!(%call_id, error = %e, "end-of-call notice not queued; asking again later");
                            }
                        }
                    }
                    .instrument(span),
                );
            }
        }
    }
}
