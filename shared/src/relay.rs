//! One Redis pub/sub connection per process, shared by every local
//! listener.
//!
//! [`Relay::subscribe`] returns a [`Subscription`] to a channel; the first
//! local listener of a channel makes the relay `SUBSCRIBE` to it, the last
//! one to go makes it `UNSUBSCRIBE`. Each message is received and decoded
//! once per process ([`Relay::start_with`] takes the decoder; [`Relay::start`]
//! keeps the raw bytes) and handed to every listener as a clone of the same
//! value.
//!
//! The guarantee a listener builds on: once `subscribe` returned, every
//! message published afterwards reaches it — or, if the connection dropped
//! in between, it receives [`Message::Resync`] after the relay subscribed
//! again, and must re-read what it needs (an operation's log after its last
//! seq). A listener that falls more than the channel capacity behind sees
//! `Lagged` from [`Subscription::recv`] and must do the same.
//!
//! Subscribe and unsubscribe round trips never hold up message delivery:
//! the relay task keeps forwarding messages while one batch of channel
//! changes is in flight, and batches whatever piled up meanwhile. It pings
//! Redis when idle, so a connection that died silently is noticed.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use rand::Rng;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, warn};

/// How often an idle relay checks that its connection is alive.
const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(10);
/// How long a round trip (connect, subscribe, ping) may take before the
/// connection is considered dead.
const ROUND_TRIP_LIMIT: Duration = Duration::from_secs(5);

/// What a listener receives.
#[derive(Debug, Clone)]
pub enum Message<T = Bytes> {
    /// A published payload, decoded once and shared by every listener.
    Payload(T),
    /// The connection was re-established: messages may have been missed.
    Resync,
}

type Reply<T> = oneshot::Sender<broadcast::Receiver<Message<T>>>;

enum Command<T> {
    Subscribe { channel: String, reply: Reply<T> },
    Release { channel: String },
}

/// A cheap-to-clone handle on the process's relay task.
#[derive(Debug)]
pub struct Relay<T = Bytes> {
    commands: mpsc::UnboundedSender<Command<T>>,
}

impl<T> Clone for Relay<T> {
    fn clone(&self) -> Self {
        Relay {
            commands: self.commands.clone(),
        }
    }
}

/// A listener's handle on one channel; unsubscribes when dropped.
#[derive(Debug)]
pub struct Subscription<T = Bytes> {
    /// Always `Some` until dropped (taken first, so the relay sees no
    /// receiver left when it handles the release).
    receiver: Option<broadcast::Receiver<Message<T>>>,
    channel: String,
    commands: mpsc::UnboundedSender<Command<T>>,
}

impl<T: Clone> Subscription<T> {
    /// The next message; `Lagged` when this listener fell behind (re-read
    /// what it needs), `Closed` when the relay stopped.
    pub async fn recv(&mut self) -> Result<Message<T>, RecvError> {
        match self.receiver.as_mut() {
            Some(receiver) => receiver.recv().await,
            None => Err(RecvError::Closed),
        }
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        drop(self.receiver.take());
        let _ = self.commands.send(Command::Release {
            channel: std::mem::take(&mut self.channel),
        });
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the pub/sub relay has stopped")]
pub struct RelayStopped;

impl Relay<Bytes> {
    /// Starts a relay that hands out each payload's raw bytes. `capacity`
    /// is how many messages a listener may fall behind before it lags.
    pub fn start(client: redis::Client, capacity: usize) -> Relay<Bytes> {
        Relay::start_with(client, capacity, |payload| {
            Some(Bytes::copy_from_slice(payload))
        })
    }
}

impl<T: Clone + Send + Sync + 'static> Relay<T> {
    /// Starts a relay that decodes each payload once with `decode`
    /// (payloads it returns `None` for are dropped).
    pub fn start_with(
        client: redis::Client,
        capacity: usize,
        decode: impl Fn(&[u8]) -> Option<T> + Send + 'static,
    ) -> Relay<T> {
        let (commands, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(client, receiver, capacity.max(16), decode));
        Relay { commands }
    }

    /// Subscribes to `channel`; resolves once Redis confirmed the
    /// subscription, so nothing published after this returns is missed.
    /// While Redis is unreachable it waits for the relay to reconnect.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription<T>, RelayStopped> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Subscribe {
                channel: channel.to_owned(),
                reply,
            })
            .map_err(|_| RelayStopped)?;
        let receiver = answer.await.map_err(|_| RelayStopped)?;
        Ok(Subscription {
            receiver: Some(receiver),
            channel: channel.to_owned(),
            commands: self.commands.clone(),
        })
    }
}

/// Whether Redis has the channel subscribed on the current connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Unsubscribed,
    Subscribing,
    Subscribed,
}

struct Channel<T> {
    sender: broadcast::Sender<Message<T>>,
    /// Listeners waiting for the subscription to be confirmed.
    waiters: Vec<Reply<T>>,
    standing: Standing,
    /// Its listeners were subscribed on a connection that dropped: they get
    /// a `Resync` once the channel is subscribed again.
    stale: bool,
}

impl<T> Channel<T> {
    fn wanted(&self) -> bool {
        !self.waiters.is_empty() || self.sender.receiver_count() > 0
    }
}

/// Channel changes sent to Redis in one round trip.
#[derive(Default)]
struct Batch {
    subscribe: Vec<String>,
    unsubscribe: Vec<String>,
}

struct State<T> {
    channels: HashMap<String, Channel<T>>,
    /// Channels whose wanted-ness may have changed since the last batch.
    dirty: Vec<String>,
    capacity: usize,
}

impl<T: Clone> State<T> {
    fn on_command(&mut self, command: Command<T>, connected: bool) {
        match command {
            Command::Subscribe { channel, reply } => {
                let capacity = self.capacity;
                let entry = self.channels.entry(channel.clone()).or_insert_with(|| {
                    let (sender, _) = broadcast::channel(capacity);
                    Channel {
                        sender,
                        waiters: Vec::new(),
                        standing: Standing::Unsubscribed,
                        stale: false,
                    }
                });
                if entry.standing == Standing::Subscribed {
                    let _ = reply.send(entry.sender.subscribe());
                } else {
                    entry.waiters.push(reply);
                    self.dirty.push(channel);
                }
            }
            Command::Release { channel } => {
                if connected {
                    self.dirty.push(channel);
                } else if self.channels.get(&channel).is_some_and(|c| !c.wanted()) {
                    self.channels.remove(&channel);
                }
            }
        }
    }

    /// The changes Redis needs now; marks the channels to subscribe as in flight.
    fn next_batch(&mut self) -> Batch {
        let mut batch = Batch::default();
        for name in std::mem::take(&mut self.dirty) {
            let Some(channel) = self.channels.get_mut(&name) else {
                continue;
            };
            match (channel.standing, channel.wanted()) {
                (Standing::Unsubscribed, true) => {
                    channel.standing = Standing::Subscribing;
                    batch.subscribe.push(name);
                }
                (Standing::Unsubscribed, false) => {
                    self.channels.remove(&name);
                }
                (Standing::Subscribed, false) => {
                    self.channels.remove(&name);
                    batch.unsubscribe.push(name);
                }
                // In flight (looked at again when confirmed), or nothing to do.
                _ => {}
            }
        }
        batch
    }

    /// Redis confirmed `channels`: hand out receivers, resync stale listeners.
    fn confirmed(&mut self, channels: Vec<String>) {
        for name in channels {
            let Some(channel) = self.channels.get_mut(&name) else {
                continue;
            };
            channel.standing = Standing::Subscribed;
            if std::mem::take(&mut channel.stale) {
                let _ = channel.sender.send(Message::Resync);
            }
            for waiter in channel.waiters.drain(..) {
                let _ = waiter.send(channel.sender.subscribe());
            }
            self.dirty.push(name);
        }
    }

    fn deliver(&self, channel: &str, payload: &[u8], decode: &impl Fn(&[u8]) -> Option<T>) {
        if let Some(channel) = self.channels.get(channel)
            && channel.sender.receiver_count() > 0
            && let Some(value) = decode(payload)
        {
            let _ = channel.sender.send(Message::Payload(value));
        }
    }

    /// The connection dropped: nothing is subscribed any more.
    fn disconnected(&mut self) {
        for (name, channel) in &mut self.channels {
            if channel.sender.receiver_count() > 0 {
                channel.stale = true;
            }
            channel.standing = Standing::Unsubscribed;
            self.dirty.push(name.clone());
        }
    }
}

async fn run<T: Clone + Send + Sync + 'static>(
    client: redis::Client,
    mut commands: mpsc::UnboundedReceiver<Command<T>>,
    capacity: usize,
    decode: impl Fn(&[u8]) -> Option<T> + Send + 'static,
) {
    let mut state = State {
        channels: HashMap::new(),
        dirty: Vec::new(),
        capacity,
    };
    let mut failures: u32 = 0;
    loop {
        let connected = tokio::time::timeout(ROUND_TRIP_LIMIT, client.get_async_pubsub()).await;
        let pubsub = match connected {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(err)) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(20) {
                    warn!(error = %err, "pub/sub relay cannot connect; retrying");
                }
                if !back_off(&mut commands, &mut state, failures).await {
                    return;
                }
                continue;
            }
            Err(_) => {
                failures += 1;
                if !back_off(&mut commands, &mut state, failures).await {
                    return;
                }
                continue;
            }
        };
        if failures > 0 {
            debug!(channels = state.channels.len(), "pub/sub relay reconnected");
        }
        failures = 0;
        let (sink, mut stream) = pubsub.split();
        let mut in_flight: Option<BoxFuture<'static, Result<Vec<String>, ()>>> = None;
        let mut health = tokio::time::interval_at(
            tokio::time::Instant::now() + HEALTH_CHECK_EVERY,
            HEALTH_CHECK_EVERY,
        );
        loop {
            if in_flight.is_none() {
                let batch = state.next_batch();
                if !batch.subscribe.is_empty() || !batch.unsubscribe.is_empty() {
                    in_flight = Some(Box::pin(apply(sink.clone(), batch)));
                }
            }
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => state.on_command(command, true),
                    None => return,
                },
                message = stream.next() => match message {
                    Some(message) => {
                        state.deliver(message.get_channel_name(), message.get_payload_bytes(), &decode);
                    }
                    None => break,
                },
                done = async { in_flight.as_mut().expect("guarded").await }, if in_flight.is_some() => {
                    in_flight = None;
                    match done {
                        Ok(subscribed) => state.confirmed(subscribed),
                        Err(()) => break,
                    }
                }
                _ = health.tick(), if in_flight.is_none() => {
                    in_flight = Some(Box::pin(ping(sink.clone())));
                }
            }
        }
        state.disconnected();
        warn!("pub/sub relay lost its connection; reconnecting");
    }
}

/// Sends one batch; returns the channels Redis confirmed.
async fn apply(mut sink: redis::aio::PubSubSink, batch: Batch) -> Result<Vec<String>, ()> {
    let round_trips = async {
        if !batch.unsubscribe.is_empty() {
            sink.unsubscribe(&batch.unsubscribe).await?;
        }
        if !batch.subscribe.is_empty() {
            sink.subscribe(&batch.subscribe).await?;
        }
        Ok::<_, redis::RedisError>(())
    };
    match tokio::time::timeout(ROUND_TRIP_LIMIT, round_trips).await {
        Ok(Ok(())) => Ok(batch.subscribe),
        Ok(Err(err)) => {
            debug!(error = %err, "pub/sub relay could not change its subscriptions");
            Err(())
        }
        Err(_) => Err(()),
    }
}

async fn ping(mut sink: redis::aio::PubSubSink) -> Result<Vec<String>, ()> {
    match tokio::time::timeout(ROUND_TRIP_LIMIT, sink.ping::<redis::Value>()).await {
        Ok(Ok(_)) => Ok(Vec::new()),
        _ => Err(()),
    }
}

/// Waits out a reconnect delay while still taking commands (subscribe
/// requests wait for the connection; releases apply). Returns false when
/// every relay handle is gone.
async fn back_off<T: Clone>(
    commands: &mut mpsc::UnboundedReceiver<Command<T>>,
    state: &mut State<T>,
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
                Some(command) => state.on_command(command, false),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State<u32> {
        State {
            channels: HashMap::new(),
            dirty: Vec::new(),
            capacity: 16,
        }
    }

    fn subscribe(
        state: &mut State<u32>,
        channel: &str,
    ) -> oneshot::Receiver<broadcast::Receiver<Message<u32>>> {
        let (reply, answer) = oneshot::channel();
        state.on_command(
            Command::Subscribe {
                channel: channel.into(),
                reply,
            },
            true,
        );
        answer
    }

    #[test]
    fn two_listeners_of_a_new_channel_share_one_subscribe() {
        let mut state = state();
        let mut first = subscribe(&mut state, "a");
        let mut second = subscribe(&mut state, "a");
        let batch = state.next_batch();
        assert_eq!(batch.subscribe, ["a"]);
        assert!(first.try_recv().is_err(), "not before Redis confirmed");
        state.confirmed(batch.subscribe);
        let mut first = first.try_recv().expect("answered");
        let _second = second.try_recv().expect("answered");
        state.deliver("a", b"7", &|b: &[u8]| {
            std::str::from_utf8(b).ok()?.parse().ok()
        });
        assert!(matches!(first.try_recv(), Ok(Message::Payload(7))));
    }

    #[test]
    fn the_last_release_unsubscribes_and_a_resubscribe_follows_it() {
        let mut state = state();
        let answer = subscribe(&mut state, "a");
        let batch = state.next_batch();
        state.confirmed(batch.subscribe);
        let receiver = answer.blocking_recv().expect("answered");
        drop(receiver);
        state.on_command(
            Command::Release {
                channel: "a".into(),
            },
            true,
        );
        let batch = state.next_batch();
        assert_eq!(batch.unsubscribe, ["a"]);
        let _again = subscribe(&mut state, "a");
        assert_eq!(state.next_batch().subscribe, ["a"]);
    }

    #[test]
    fn listeners_of_a_dropped_connection_get_a_resync_once_subscribed_again() {
        let mut state = state();
        let answer = subscribe(&mut state, "a");
        let batch = state.next_batch();
        state.confirmed(batch.subscribe);
        let mut receiver = answer.blocking_recv().expect("answered");
        state.disconnected();
        let batch = state.next_batch();
        assert_eq!(batch.subscribe, ["a"]);
        assert!(
            receiver.try_recv().is_err(),
            "no resync before Redis confirmed"
        );
        state.confirmed(batch.subscribe);
        assert!(matches!(receiver.try_recv(), Ok(Message::Resync)));
    }
}
