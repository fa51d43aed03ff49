//! One task per joined room owns that room's connection.
//!
//! The task connects with the protocol crate's [`Client`], forwards every
//! event to the runtime, writes what the app sends, and when the connection
//! goes it follows the server's advice ([`ClientError::advice`]): stop (a
//! refusal that would repeat, shown to the user) or reconnect after a delay
//! from [`Backoff::for_clients`] (exponential, jittered, capped at 30 s).
//! Reconnects resume with `since` = the last message id seen, so the
//! welcome's history holds exactly what was missed.
//!
//! The UI never waits on this task: it talks to it over channels.

use std::time::{Duration, Instant};

use chat_protocol::close::{Advice, Backoff};
use chat_protocol::{
    Client, ClientError, ClientMessage, ConnectOptions, HistoryRequest, Mode, RoomName,
    ServerEvent, ServerUrl, UserName,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::msg::{Msg, NetEvent};

/// A connection that lasted this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// What the runtime tells a room task.
#[derive(Debug)]
pub enum RoomCommand {
    /// Send a message (reported back as [`NetEvent::NotSent`] on failure).
    Send {
        /// The app's id for it.
        local_id: u64,
        /// The frame.
        message: ClientMessage,
    },
    /// Use this name for the next connections.
    Rename(UserName),
    /// Ask for stored messages (dropped while there is no connection: the
    /// app asks again).
    History(HistoryRequest),
    /// Connect again now: skip the wait, or drop the connection and make a
    /// new one.
    Reconnect,
    /// Close the connection and end the task.
    Leave,
}

/// The runtime's handle on a room task.
#[derive(Debug)]
pub struct RoomHandle {
    /// Commands to the task.
    pub commands: mpsc::UnboundedSender<RoomCommand>,
    /// The task.
    pub task: JoinHandle<()>,
}

/// Starts the task for `room`. Its reports arrive on `out` as [`Msg::Net`].
pub fn spawn(
    server: ServerUrl,
    room: RoomName,
    options: ConnectOptions,
    out: mpsc::Sender<Msg>,
) -> RoomHandle {
    // Unbounded on purpose: the app sends what the user typed, which is
    // small and human-paced, and `update` must never wait.
    let (commands, inbox) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(server, room, options, inbox, out));
    RoomHandle { commands, task }
}

/// Why a connection ended.
enum End {
    Lost(ClientError),
    Reconnect,
    Leave,
}

/// What a command means while there is no connection.
enum Offline {
    /// Go on (waiting, or connecting).
    Stay,
    /// Connect now.
    Reconnect,
    /// End the task.
    Leave,
}

struct Room {
    server: ServerUrl,
    name: RoomName,
    options: ConnectOptions,
    inbox: mpsc::UnboundedReceiver<RoomCommand>,
    out: mpsc::Sender<Msg>,
    since: Option<u64>,
    /// The epoch `since` belongs to.
    epoch: Option<String>,
}

impl Room {
    async fn emit(&self, event: NetEvent) -> bool {
        self.out
            .send(Msg::Net(self.name.clone(), event))
            .await
            .is_ok()
    }

    /// A command while there is no connection.
    async fn offline_command(&mut self, command: Option<RoomCommand>) -> Offline {
        match command {
            None | Some(RoomCommand::Leave) => Offline::Leave,
            Some(RoomCommand::Send { local_id, .. }) => {
                self.emit(NetEvent::NotSent { local_id }).await;
                Offline::Stay
            }
            Some(RoomCommand::Rename(name)) => {
                self.options = self.options.clone().name(name);
                Offline::Stay
            }
            Some(RoomCommand::History(_)) => Offline::Stay,
            Some(RoomCommand::Reconnect) => Offline::Reconnect,
        }
    }

    fn track(&mut self, event: &ServerEvent) {
        match event {
            // The welcome speaks for the server's sequence as it is now: a
            // server that restarted without its history counts from 0 again,
            // and resuming from an old, higher id would skip its messages.
            ServerEvent::Welcome(w) => {
                self.since = Some(w.history.iter().map(|c| c.id).fold(w.last_id, u64::max));
                self.epoch = Some(w.epoch.clone()).filter(|e| !e.is_empty());
            }
            ServerEvent::Chat(c) if c.id > 0 => {
                self.since = Some(self.since.map_or(c.id, |s| s.max(c.id)));
            }
            _ => {}
        }
    }

    /// Connects once; `Err` carries why it failed, or `Ok(None)` on Leave.
    async fn connect(&mut self) -> Result<Option<Client>, ClientError> {
        let options = self
            .options
            .clone()
            .since(self.since)
            .epoch(self.epoch.clone());
        let (server, name) = (self.server.clone(), self.name.clone());
        let connect = Client::connect(&server, &name, &options);
        tokio::pin!(connect);
        loop {
            tokio::select! {
                result = &mut connect => return result.map(Some),
                command = self.inbox.recv() => {
                    if let Offline::Leave = self.offline_command(command).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Runs one connection until it ends.
    async fn session(&mut self, client: Client) -> End {
        let mode = client.mode();
        if !self.emit(NetEvent::Connected { mode }).await {
            return End::Leave;
        }
        let (sender, mut events) = client.split();
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(event)) => {
                        if mode == Mode::Events {
                            self.track(&event);
                        }
                        if !self.emit(NetEvent::Server(event)).await {
                            return End::Leave;
                        }
                    }
                    Some(Err(err)) => return End::Lost(err),
                    None => {
                        return End::Lost(ClientError::disconnected(
                            "the server closed the connection",
                        ));
                    }
                },
                command = self.inbox.recv() => match command {
                    None | Some(RoomCommand::Leave) => {
                        let _ = tokio::time::timeout(Duration::from_secs(1), sender.close()).await;
                        return End::Leave;
                    }
                    Some(RoomCommand::Rename(name)) => {
                        self.options = self.options.clone().name(name);
                    }
                    Some(RoomCommand::Reconnect) => {
                        let _ = tokio::time::timeout(Duration::from_secs(1), sender.close()).await;
                        return End::Reconnect;
                    }
                    Some(RoomCommand::History(request)) => {
                        if let Err(err) = sender.history(request).await {
                            tracing::debug!(room = %self.name, %err, "history request failed");
                        }
                    }
                    Some(RoomCommand::Send { local_id, message }) => {
                        if let Err(err) = sender.send(&message).await {
                            tracing::debug!(room = %self.name, %err, "send failed");
                            if local_id != 0 {
                                self.emit(NetEvent::NotSent { local_id }).await;
                            }
                        }
                    }
                },
            }
        }
    }

    /// Waits `delay` (forever when `None`), still answering commands.
    /// Returns false on Leave; true when the wait is over or a reconnect
    /// was asked for.
    async fn wait(&mut self, delay: Option<Duration>) -> bool {
        let sleep = tokio::time::sleep(delay.unwrap_or(Duration::from_secs(u64::from(u32::MAX))));
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep, if delay.is_some() => return true,
                command = self.inbox.recv() => match self.offline_command(command).await {
                    Offline::Stay => {}
                    Offline::Reconnect => return true,
                    Offline::Leave => return false,
                },
            }
        }
    }
}

async fn run(
    server: ServerUrl,
    name: RoomName,
    options: ConnectOptions,
    inbox: mpsc::UnboundedReceiver<RoomCommand>,
    out: mpsc::Sender<Msg>,
) {
    let mut room = Room {
        server,
        name,
        options,
        inbox,
        out,
        since: None,
        epoch: None,
    };
    let mut backoff = Backoff::for_clients();
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        if !room.emit(NetEvent::Connecting { attempt }).await {
            return;
        }
        let err = match room.connect().await {
            Ok(None) => return,
            Ok(Some(client)) => {
                let started = Instant::now();
                match room.session(client).await {
                    End::Leave => return,
                    End::Reconnect => {
                        backoff.reset();
                        attempt = 0;
                        continue;
                    }
                    End::Lost(err) => {
                        if started.elapsed() >= STABLE_AFTER {
                            backoff.reset();
                        }
                        attempt = 0;
                        err
                    }
                }
            }
            Err(err) => err,
        };
        let close_code = match &err {
            ClientError::Closed { code, .. } => *code,
            _ => None,
        };
        tracing::info!(room = %room.name, %err, "connection ended");
        match err.advice() {
            Advice::Stop => {
                room.emit(NetEvent::Stopped {
                    reason: err.to_string(),
                    name_taken: err.is_name_taken(),
                })
                .await;
                // Stay for the app's Leave or Reconnect; answer sends with
                // NotSent.
                if !room.wait(None).await {
                    return;
                }
                backoff.reset();
                attempt = 0;
            }
            Advice::Reconnect { min_delay } => {
                let delay = backoff.next_delay(min_delay);
                let event = NetEvent::Disconnected {
                    reason: err.to_string(),
                    close_code,
                    retry_in: delay,
                    at_ms: chat_protocol::unix_millis(),
                    attempt: attempt.max(1),
                };
                if !room.emit(event).await || !room.wait(Some(delay)).await {
                    return;
                }
            }
        }
    }
}
