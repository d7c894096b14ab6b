//! One Redis pub/sub connection per process, shared by every local
//! listener.
//!
//! [`Relay::subscribe`] returns a [`Subscription`] to a channel; the first
//! local listener of a channel makes the relay `SUBSCRIBE` to it, the last
//! one to go makes it `UNSUBSCRIBE`. Each message is received once and
//! handed to every listener as the same [`Bytes`] (no copy, no re-parse).
//!
//! When the connection drops, the relay reconnects with backoff, subscribes
//! to every channel again and then sends [`Message::Resync`] to every
//! listener: messages published meanwhile were missed, and each listener
//! re-reads what it needs (an operation's log after its last seq). A
//! listener that falls behind sees `Lagged` from its receiver and must do
//! the same.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, warn};

/// What a listener receives.
#[derive(Debug, Clone)]
pub enum Message {
    /// A published payload (an event frame's JSON), shared by every listener.
    Payload(Bytes),
    /// The connection was re-established: messages may have been missed.
    Resync,
}

enum Command {
    Subscribe {
        channel: String,
        reply: oneshot::Sender<broadcast::Receiver<Message>>,
    },
    Release {
        channel: String,
    },
}

/// A cheap-to-clone handle on the process's relay task.
#[derive(Clone, Debug)]
pub struct Relay {
    commands: mpsc::UnboundedSender<Command>,
    capacity: usize,
}

/// A listener's handle on one channel; unsubscribes when dropped.
#[derive(Debug)]
pub struct Subscription {
    pub receiver: broadcast::Receiver<Message>,
    channel: String,
    commands: mpsc::UnboundedSender<Command>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Release {
            channel: std::mem::take(&mut self.channel),
        });
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the pub/sub relay has stopped")]
pub struct RelayStopped;

impl Relay {
    /// Starts the relay task on `client`. `capacity` is how many messages a
    /// listener may fall behind before it lags.
    pub fn start(client: redis::Client, capacity: usize) -> Relay {
        let (commands, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(client, receiver, capacity.max(16)));
        Relay {
            commands,
            capacity: capacity.max(16),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Subscribes to `channel`; resolves once Redis confirmed the
    /// subscription, so nothing published after this returns is missed.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, RelayStopped> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Subscribe {
                channel: channel.to_owned(),
                reply,
            })
            .map_err(|_| RelayStopped)?;
        let receiver = answer.await.map_err(|_| RelayStopped)?;
        Ok(Subscription {
            receiver,
            channel: channel.to_owned(),
            commands: self.commands.clone(),
        })
    }
}

struct State {
    channels: HashMap<String, broadcast::Sender<Message>>,
    /// Subscribe requests waiting for a connection.
    waiting: Vec<(String, oneshot::Sender<broadcast::Receiver<Message>>)>,
    capacity: usize,
}

async fn run(
    client: redis::Client,
    mut commands: mpsc::UnboundedReceiver<Command>,
    capacity: usize,
) {
    let mut state = State {
        channels: HashMap::new(),
        waiting: Vec::new(),
        capacity,
    };
    let mut failures: u32 = 0;
    let mut first = true;
    loop {
        let pubsub = match client.get_async_pubsub().await {
            Ok(pubsub) => pubsub,
            Err(err) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(20) {
                    warn!(error = %err, "pub/sub relay cannot connect; retrying");
                }
                if !wait_or_command(&mut commands, &mut state, failures).await {
                    return;
                }
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        // Subscribe to everything listeners want, then tell them to catch up.
        let channels: Vec<String> = state.channels.keys().cloned().collect();
        if !channels.is_empty() && sink.subscribe(&channels).await.is_err() {
            failures += 1;
            continue;
        }
        if !first {
            for sender in state.channels.values() {
                let _ = sender.send(Message::Resync);
            }
            debug!(channels = channels.len(), "pub/sub relay reconnected");
        }
        first = false;
        failures = 0;
        for (channel, reply) in std::mem::take(&mut state.waiting) {
            if subscribe_one(&mut sink, &mut state, channel.clone())
                .await
                .is_err()
            {
                state.waiting.push((channel, reply));
                continue;
            }
            if let Some(sender) = state.channels.get(&channel) {
                let _ = reply.send(sender.subscribe());
            }
        }
        loop {
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    match command {
                        Command::Subscribe { channel, reply } => {
                            if let Some(sender) = state.channels.get(&channel) {
                                let _ = reply.send(sender.subscribe());
                            } else if subscribe_one(&mut sink, &mut state, channel.clone()).await.is_ok() {
                                if let Some(sender) = state.channels.get(&channel) {
                                    let _ = reply.send(sender.subscribe());
                                }
                            } else {
                                state.waiting.push((channel, reply));
                                break;
                            }
                        }
                        Command::Release { channel } => {
                            let unused = state.channels.get(&channel).is_some_and(|s| s.receiver_count() == 0);
                            if unused {
                                state.channels.remove(&channel);
                                if sink.unsubscribe(&channel).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                }
                message = stream.next() => {
                    let Some(message) = message else { break };
                    let channel = message.get_channel_name();
                    if let Some(sender) = state.channels.get(channel) {
                        let payload = Bytes::copy_from_slice(message.get_payload_bytes());
                        let _ = sender.send(Message::Payload(payload));
                    }
                }
            }
        }
        warn!("pub/sub relay lost its connection; reconnecting");
    }
}

async fn subscribe_one(
    sink: &mut redis::aio::PubSubSink,
    state: &mut State,
    channel: String,
) -> Result<(), redis::RedisError> {
    sink.subscribe(&channel).await?;
    let (sender, _) = broadcast::channel(state.capacity);
    state.channels.insert(channel, sender);
    Ok(())
}

/// Waits out a reconnect delay while still taking commands (subscribe
/// requests queue up; releases apply). Returns false when the relay is dropped.
async fn wait_or_command(
    commands: &mut mpsc::UnboundedReceiver<Command>,
    state: &mut State,
    failures: u32,
) -> bool {
    let ceiling = 50u64.saturating_mul(1 << failures.min(6)).min(2_000);
    let delay = Duration::from_millis(rand::rng().random_range(ceiling / 2..=ceiling));
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return true,
            command = commands.recv() => match command {
                None => return false,
                Some(Command::Subscribe { channel, reply }) => {
                    // Known channels answer at once; the resync after the
                    // reconnect covers what they miss meanwhile.
                    match state.channels.get(&channel) {
                        Some(sender) => { let _ = reply.send(sender.subscribe()); }
                        None => state.waiting.push((channel, reply)),
                    }
                }
                Some(Command::Release { channel }) => {
                    if state.channels.get(&channel).is_some_and(|s| s.receiver_count() == 0) {
                        state.channels.remove(&channel);
                    }
                }
            },
        }
    }
}
