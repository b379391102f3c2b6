//! What the host sends, handled: CALLs (spawned or run inline), CANCELs,
//! answers to the plugin's own host calls, EVENTs for the event task, and
//! GOODBYE.

use super::*;

impl Session {
    pub(super) async fn on_frame(
        &mut self,
        frame: Bytes,
        rest: &mut std::collections::VecDeque<Bytes>,
    ) -> Result<(), SdkError> {
        let message = match iglu_bus::decode_shared(&frame, self.max_message) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(plugin = %self.plugin_id, error = %e, "dropping a frame from the host");
                return Ok(());
            }
        };
        match message {
            Message::Call(call) => self.on_call(call).await?,
            Message::Cancel(c) => {
                if let Some(call) = self.running.remove(&c.id) {
                    call.abort();
                }
            }
            Message::Reply(r) => self.resolve(r.id, Ok(r.result)),
            Message::Error(e) => match e.id {
                Some(id) => self.resolve(id, Err(e.into_wire_error())),
                None => {
                    tracing::warn!(plugin = %self.plugin_id, code = %e.code, message = %e.message, "the host reported a problem")
                }
            },
            Message::Heartbeat(_) => {}
            Message::Event(header) => {
                // A batch: header, body, then more header/body pairs.
                self.on_event(header, rest.pop_front());
                while let Some(head) = rest.pop_front() {
                    let body = rest.pop_front();
                    match iglu_bus::decode(&head, self.max_message) {
                        Ok(Message::Event(header)) => self.on_event(header, body),
                        _ => {
                            tracing::warn!(plugin = %self.plugin_id, "dropping a bad frame in an event batch")
                        }
                    }
                }
            }
            Message::Goodbye(g) => {
                tracing::info!(plugin = %self.plugin_id, reason = %g.reason, "the host said goodbye");
                if self.draining.is_none() {
                    self.start_draining(Ended::HostGoodbye(g.reason));
                }
            }
            Message::Hello(_) | Message::Welcome(_) | Message::Reject(_) | Message::Credit(_) => {
                tracing::warn!(plugin = %self.plugin_id, "ignoring a message the host should not send")
            }
        }
        Ok(())
    }

    fn on_event(&mut self, header: iglu_bus::EventHeader, body: Option<Bytes>) {
        let decoded = body
            .ok_or_else(|| "an EVENT without its body frame".to_owned())
            .and_then(|b| {
                iglu_bus::codec::decode_event_body(&b, self.max_message).map_err(|e| e.to_string())
            });
        let body = match decoded {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(plugin = %self.plugin_id, seq = header.seq, error = %e, "dropping a bad event");
                return;
            }
        };
        let event = Event {
            topic: body.topic,
            payload: body.payload,
            source: body.source,
            seq: header.seq,
            missed: 0,
            retained: header.retained,
            timestamp_ms: body.timestamp_ms,
        };
        if self.event_tx.try_send(event).is_err() {
            tracing::warn!(plugin = %self.plugin_id, seq = header.seq, "event beyond the credit window: dropped");
        }
    }

    async fn on_call(&mut self, call: iglu_bus::Call) -> Result<(), SdkError> {
        let id = call.id;
        if self.draining.is_some() {
            let err = WireError::new(ErrorCode::NotRunning, "the plugin is shutting down");
            return self.send(error_frame(id, err)?).await;
        }
        let Some(handler) = self.service.handlers.get(&call.method) else {
            let err = WireError::new(
                ErrorCode::MethodNotFound,
                format!("no method named {:?}", call.method),
            );
            return self.send(error_frame(id, err)?).await;
        };
        let deadline = Duration::from_millis(u64::from(call.deadline_ms));
        let max = self.max_message;
        let mut work = Box::pin(run_guarded(handler, self.ctx.clone(), call.args));
        if self.service.inline_handlers {
            // Most inline handlers finish at their first poll: answer at once,
            // without a task or a timer, in the batch this loop is building.
            if let Some(result) = futures::FutureExt::now_or_never(&mut work) {
                self.answers.push(answer_frame(id, result, max));
                return Ok(());
            }
        }
        // The deadline counts from arrival, however long the call waits for a thread.
        let due = tokio::time::Instant::now() + deadline;
        let out = self.outgoing_tx.clone();
        let fut = async move {
            let result = match tokio::time::timeout_at(due, work).await {
                Ok(r) => r,
                Err(_) => Err(WireError::new(
                    ErrorCode::Timeout,
                    format!(
                        "the handler ran past its deadline of {} ms",
                        deadline.as_millis()
                    ),
                )),
            };
            let frame = answer_frame(id, result, max);
            // The loop is gone only when the process is exiting; nothing to tell.
            let _ = out.send(Outgoing::Done { id, frame }).await;
        };
        let task = if self.service.inline_handlers {
            tokio::spawn(fut)
        } else {
            self.service.handler_runtime.spawn(fut)
        };
        self.running.insert(id, task.abort_handle());
        Ok(())
    }

    fn resolve(&self, id: CallId, answer: Result<Bytes, WireError>) {
        let waiter = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        match waiter {
            Some(call) => {
                let _ = call.waiter.send(answer);
            }
            None => {
                tracing::debug!(plugin = %self.plugin_id, %id, "answer to a call nobody waits for")
            }
        }
    }
}
