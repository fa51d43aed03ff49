//! The pub/sub pump: the one task that owns this instance's pub/sub
//! connection to Redis. It subscribes to the channel of every room with
//! local members, hands what arrives to the local fan-out, and, when the
//! connection drops, reconnects with capped backoff and subscribes again.

use std::sync::atomic::Ordering;

use chat_protocol::RoomName;
use futures_util::StreamExt;
use redis::Client;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::keys::parse_envelope;
use super::{COMMAND_TIMEOUT, RECONNECT_MAX, RECONNECT_MIN, RedisLayer};
use crate::rooms::lock;

/// What the pump is asked to do with subscriptions.
#[derive(Debug)]
pub(super) enum SubCommand {
    /// Subscribe to a room's channel; confirm when done.
    Subscribe(RoomName, Option<oneshot::Sender<()>>),
    /// Unsubscribe, unless the room has local members again.
    Unsubscribe(RoomName),
}

impl RedisLayer {
    /// Owns the pub/sub connection: connects, subscribes every room with
    /// local members, delivers, and starts again when the connection drops.
    pub(super) async fn pump(
        self,
        client: Client,
        mut commands: mpsc::UnboundedReceiver<SubCommand>,
        shutdown: CancellationToken,
        ready: oneshot::Sender<()>,
    ) {
        let mut ready = Some(ready);
        let mut delay = RECONNECT_MIN;
        loop {
            let attempt = tokio::select! {
                () = shutdown.cancelled() => return,
                attempt = self.connect_pubsub(&client) => attempt,
            };
            let (mut sink, mut stream) = match attempt {
                Ok(pair) => pair,
                Err(reason) => {
                    self.set_up(false, Some(reason));
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(RECONNECT_MAX);
                    continue;
                }
            };
            delay = RECONNECT_MIN;
            let was_down = !self.inner.up.load(Ordering::Relaxed);
            self.set_up(true, None);
            if was_down && ready.is_none() {
                info!("Redis is back: rooms resubscribed, publishing again");
            }
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
            // Presence may have been lost with Redis: write it again now.
            self.refresh_presence().await;
            let lost = loop {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return,
                    message = stream.next() => match message {
                        Some(message) => self.deliver(&message),
                        None => break "the pub/sub connection to Redis was lost".to_owned(),
                    },
                    command = commands.recv() => match command {
                        Some(command) => {
                            if let Err(err) = self.apply(&mut sink, command).await {
                                break format!("Redis refused a subscription: {err}");
                            }
                        }
                        None => return,
                    },
                }
            };
            self.set_up(false, Some(lost));
        }
    }

    /// Hands a message from the room's channel to the local subscribers.
    fn deliver(&self, message: &redis::Msg) {
        let Some(room) = self.inner.keys.room_of_channel(message.get_channel_name()) else {
            return;
        };
        if let Some(frames) = parse_envelope(message.get_payload_bytes()) {
            self.inner.registry.deliver(&room, frames);
        } else {
            warn!(%room, "ignoring a malformed message on the room's channel");
        }
    }

    /// A fresh pub/sub connection subscribed to every room with local
    /// members, once the command connection answers too.
    async fn connect_pubsub(&self, client: &Client) -> Result<(PubSubSink, PubSubStream), String> {
        let connect = async {
            let (mut sink, stream) = client.get_async_pubsub().await?.split();
            let channels: Vec<String> = lock(&self.inner.local)
                .keys()
                .map(|room| self.inner.keys.channel(room))
                .collect();
            if !channels.is_empty() {
                sink.subscribe(channels).await?;
            }
            let mut conn = self.inner.conn.clone();
            let _: String = redis::cmd("PING").query_async(&mut conn).await?;
            Ok::<_, redis::RedisError>((sink, stream))
        };
        match tokio::time::timeout(COMMAND_TIMEOUT, connect).await {
            Ok(Ok(pair)) => Ok(pair),
            Ok(Err(err)) => Err(format!("cannot connect to Redis: {err}")),
            Err(_) => Err("cannot connect to Redis: no answer".to_owned()),
        }
    }

    async fn apply(
        &self,
        sink: &mut PubSubSink,
        command: SubCommand,
    ) -> Result<(), redis::RedisError> {
        match command {
            SubCommand::Subscribe(room, ack) => {
                sink.subscribe(self.inner.keys.channel(&room)).await?;
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            }
            SubCommand::Unsubscribe(room) => {
                if !lock(&self.inner.local).contains_key(&room) {
                    sink.unsubscribe(self.inner.keys.channel(&room)).await?;
                }
            }
        }
        Ok(())
    }
}
