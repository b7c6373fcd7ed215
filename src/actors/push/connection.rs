//! Connection: one per WebSocket. Owns the socket through two tasks, a reader
//! that turns frames into messages and a writer that sends one batch at a
//! time. Notices wait in an Outbox (one per config, the newest) while a batch
//! is written, so a slow client costs bounded memory; a write blocked past
//! `push.write_timeout_ms` ends the connection. Pings go out every
//! `push.ping_interval_ms`; a peer silent past it plus `push.pong_timeout_ms`
//! is dropped. Linked to the PushRegistry and never restarted: when it
//! stops, the registry forgets it and the client reconnects.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::follow::{self, Reader, ServiceFeed};
use super::messages::{self, ClientMessage, ConnectionMsg, Protocol, PushMsg, frame};
use super::outbox::Outbox;
use super::sockets::SocketPermit;
use crate::actors::config_cache::ConfigCacheHandle;
use crate::domain::change::ChangeNotice;
use crate::domain::model::{SecretStanding, now_millis};
use crate::settings::Push;
use crate::store::Store;

/// The WebSocket close code for a socket that broke the server's rules.
const POLICY_VIOLATION: u16 = 1008;

/// Replies that may wait behind a blocked write, beyond one per subscription.
const MAX_QUEUED_REPLIES: usize = 64;

/// What a Connection starts from.
pub struct ConnectionArgs {
    /// The upgraded socket.
    pub socket: WebSocket,
    /// Its place among the node's sockets, given back when it closes.
    pub permit: SocketPermit,
    /// Which route it came in on.
    pub protocol: Protocol,
    /// The config to follow at once (the original route names it in its
    /// path) and the secret the socket was opened with.
    pub initial: Option<(String, String)>,
    /// Where subscriptions are registered.
    pub registry: ActorRef<PushMsg>,
    /// Memory, where each change's secret check reads the config.
    pub cache: ConfigCacheHandle,
    /// Where a subscription reads the config's newest revision.
    pub store: std::sync::Arc<dyn Store>,
    /// Heartbeat, idle and queue limits.
    pub settings: Arc<Push>,
    /// How long calls to other actors may take.
    pub call_timeout: Duration,
    /// Where registry services are followed.
    pub services: Option<Arc<dyn ServiceFeed>>,
    /// Who opened the socket with a token, if anyone, asked again each
    /// time: following a service needs it (config secrets grant nothing).
    pub reader: Option<Reader>,
}

pub struct ConnectionState {
    services: Option<Arc<dyn ServiceFeed>>,
    reader: Option<Reader>,
    /// Followed registry services, each with its forwarding task.
    follows: HashMap<String, JoinHandle<()>>,
    protocol: Protocol,
    registry: ActorRef<PushMsg>,
    cache: ConfigCacheHandle,
    store: std::sync::Arc<dyn Store>,
    settings: Arc<Push>,
    call_timeout: Duration,
    writer: mpsc::Sender<Vec<Message>>,
    writing: bool,
    outbox: Outbox,
    replies: Vec<Message>,
    subscriptions: HashSet<String>,
    /// Per config followed, the secret it was followed with and when its
    /// grace ends, once known: then the socket is closed (1008).
    secrets: HashMap<String, (String, Option<i64>)>,
    last_heard: Instant,
    tasks: [JoinHandle<()>; 2],
    _permit: SocketPermit,
}

/// One WebSocket client: its subscriptions, heartbeat and pending notices.
pub struct Connection;

impl Actor for Connection {
    type Msg = ConnectionMsg;
    type State = ConnectionState;
    type Arguments = ConnectionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (sink, stream) = args.socket.split();
        let (writer, batches) = mpsc::channel(1);
        // The reader also keeps the ping clock: one task fewer per socket.
        let tasks = [
            tokio::spawn(read_loop(stream, myself.clone(), args.settings.ping_interval())),
            tokio::spawn(write_loop(sink, batches, myself.clone(), args.settings.write_timeout())),
        ];
        let mut state = ConnectionState {
            services: args.services,
            reader: args.reader,
            follows: HashMap::new(),
            protocol: args.protocol,
            registry: args.registry,
            cache: args.cache,
            store: args.store,
            settings: args.settings,
            call_timeout: args.call_timeout,
            writer,
            writing: false,
            outbox: Outbox::default(),
            replies: Vec::new(),
            subscriptions: HashSet::new(),
            secrets: HashMap::new(),
            last_heard: Instant::now(),
            tasks,
            _permit: args.permit,
        };
        if let Some((config_id, secret)) = args.initial {
            state.register(&myself, &config_id).await?;
            state.secrets.insert(config_id.clone(), (secret, None));
            state.check_secret(&myself, &config_id).await;
        } else {
            myself.send_after(state.settings.subscribe_deadline(), || ConnectionMsg::SubscribeDue);
        }
        Ok(state)
    }

    async fn post_stop(&self, _: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        state.tasks[0].abort();
        for task in state.follows.values() {
            task.abort();
        }
        // The writer ends once its channel closes, sending a close frame if
        // the socket still takes one.
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ConnectionMsg::Notice(notice) => {
                if state.subscriptions.contains(&notice.config_id) {
                    // A rotation is a change too: the secret may now have a grace.
                    if !state.check_secret(&myself, &notice.config_id).await {
                        return Ok(());
                    }
                    state.outbox.push(notice);
                }
            }
            ConnectionMsg::SecretDue(config_id) => {
                if !state.check_secret(&myself, &config_id).await {
                    return Ok(());
                }
            }
            ConnectionMsg::Text(text) => {
                state.last_heard = Instant::now();
                if state.protocol == Protocol::Native {
                    state.client_message(&myself, &text).await?;
                }
            }
            ConnectionMsg::Heard => state.last_heard = Instant::now(),
            ConnectionMsg::PeerGone => {
                myself.stop(Some("peer closed".into()));
                return Ok(());
            }
            ConnectionMsg::WriterIdle => state.writing = false,
            ConnectionMsg::WriterFailed(why) => {
                crate::metrics::dropped_push_client("slow");
                tracing::debug!(why, "dropping a push client");
                myself.stop(Some(why));
                return Ok(());
            }
            ConnectionMsg::Tick => {
                if !state.writing {
                    state.replies.push(Message::Ping(Default::default()));
                    let pinged = Instant::now();
                    myself.send_after(state.settings.pong_timeout(), move || ConnectionMsg::PongDue(pinged));
                }
            }
            ConnectionMsg::PongDue(pinged) => {
                // Judged against the ping, not against the timer: the timer
                // fires a little late, and on a short round trip the pong
                // came a little early, so "silent for the pong timeout"
                // dropped clients that had answered at once.
                if state.last_heard < pinged {
                    let silent_for = state.last_heard.elapsed();
                    crate::metrics::dropped_push_client("silent");
                    // A peer that is alive but deaf learns why.
                    state
                        .close(POLICY_VIOLATION, "no pong within push.pong_timeout_ms")
                        .await;
                    myself.stop(Some(format!("peer silent for {silent_for:?}")));
                    return Ok(());
                }
            }
            ConnectionMsg::Service(members) => {
                if !follow::still_reads(state.reader.as_ref(), &members.service).await {
                    crate::metrics::dropped_push_client("token_revoked");
                    state
                        .close(POLICY_VIOLATION, "the token no longer reads this service")
                        .await;
                    myself.stop(Some("token no longer valid".into()));
                    return Ok(());
                }
                if state.follows.contains_key(&members.service) {
                    let mut body = serde_json::to_value(&*members).unwrap_or_default();
                    body["type"] = json!("service");
                    state.reply(body);
                }
            }
            ConnectionMsg::SubscribeDue => {
                if state.subscriptions.is_empty() && state.follows.is_empty() {
                    crate::metrics::dropped_push_client("no_subscription");
                    state.close(POLICY_VIOLATION, "no subscription in time").await;
                    myself.stop(Some("followed nothing in time".into()));
                    return Ok(());
                }
            }
            ConnectionMsg::Close(code) => {
                state.close(code, "server going away").await;
                myself.stop(Some("closed by the server".into()));
                return Ok(());
            }
        }
        if state.replies.len() > MAX_QUEUED_REPLIES + state.settings.max_subscriptions {
            crate::metrics::dropped_push_client("unread_replies");
            myself.stop(Some("client does not read its replies".into()));
            return Ok(());
        }
        state.flush();
        Ok(())
    }
}

impl ConnectionState {
    /// Whether the secret `config_id` was followed with still works: when its
    /// grace has ended the socket is closed with 1008 (the client reconnects
    /// with the new secret) and `false` returned; when it has a grace, a
    /// check is due at its end.
    async fn check_secret(&mut self, myself: &ActorRef<ConnectionMsg>, config_id: &str) -> bool {
        let Some((secret, due)) = self.secrets.get_mut(config_id) else {
            return true;
        };
        let now = now_millis();
        // Read in place from memory: every open socket checks on every change.
        let Ok(entry) = self.cache.entry(config_id).await else {
            return true;
        };
        let standing = entry.config.secret_standing(secret, now);
        match standing {
            SecretStanding::Current => *due = None,
            SecretStanding::Until(until) => {
                if *due != Some(until) {
                    *due = Some(until);
                    let id = config_id.to_owned();
                    // A little after the end, so the check finds it ended.
                    let wait = Duration::from_millis((until - now).max(0) as u64 + 5);
                    myself.send_after(wait, move || ConnectionMsg::SecretDue(id));
                }
            }
            SecretStanding::Refused => {
                crate::metrics::dropped_push_client("secret_expired");
                self.close(
                    POLICY_VIOLATION,
                    "secret expired: reconnect with the config's new secret",
                )
                .await;
                myself.stop(Some(format!("the secret {config_id} was followed with expired")));
                return false;
            }
        }
        true
    }

    /// Sends a close frame; the writer ends after it. Waits (at most the
    /// write timeout) for a batch being written: a close frame that did not
    /// fit the writer's queue was once dropped, and the client then saw a
    /// close without a code (1005) instead of, say, 1001 at shutdown.
    async fn close(&self, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let send = self.writer.send(vec![Message::Close(Some(frame))]);
        let _ = tokio::time::timeout(self.settings.write_timeout(), send).await;
    }

    /// Sends what is waiting, unless a batch is still being written.
    fn flush(&mut self) {
        if self.writing || (self.outbox.is_empty() && self.replies.is_empty()) {
            return;
        }
        let mut batch = std::mem::take(&mut self.replies);
        batch.extend(self.outbox.take().iter().map(|n| frame(self.protocol, n)));
        if self.writer.try_send(batch).is_ok() {
            self.writing = true;
        }
    }

    /// Registers with the registry first, then reads the revision: a change
    /// committed in between is delivered by the registry, one committed
    /// before shows in the revision read.
    async fn register(&mut self, myself: &ActorRef<ConnectionMsg>, config_id: &str) -> Result<i64, ActorProcessingErr> {
        let conn = myself.clone();
        let id = config_id.to_owned();
        let subscribe = |reply| PushMsg::Subscribe {
            config_id: id,
            conn,
            reply,
        };
        crate::actors::ask(&self.registry, messages::NAME, self.call_timeout, subscribe).await?;
        self.subscriptions.insert(config_id.to_owned());
        Ok(self.store.existing_config(config_id).await?.revision)
    }

    async fn client_message(&mut self, myself: &ActorRef<ConnectionMsg>, text: &str) -> Result<(), ActorProcessingErr> {
        match serde_json::from_str::<ClientMessage>(text) {
            Ok(ClientMessage::Subscribe {
                service: Some(service),
                revision,
                ..
            }) => {
                self.follow(myself, service, revision).await;
                Ok(())
            }
            Ok(ClientMessage::Subscribe {
                config_id: Some(config_id),
                secret: Some(secret),
                revision,
                ..
            }) => self.subscribe(myself, config_id, &secret, revision).await,
            Ok(ClientMessage::Subscribe { .. }) => {
                let why = "a subscribe names a `service`, or a `config_id` with its `secret`";
                self.reply(json!({"type": "error", "message": why}));
                Ok(())
            }
            Ok(ClientMessage::Unsubscribe {
                service: Some(service), ..
            }) => {
                if let Some(task) = self.follows.remove(&service) {
                    task.abort();
                }
                Ok(())
            }
            Ok(ClientMessage::Unsubscribe { config_id: None, .. }) => Ok(()),
            Ok(ClientMessage::Unsubscribe {
                config_id: Some(config_id),
                ..
            }) => {
                self.subscriptions.remove(&config_id);
                self.secrets.remove(&config_id);
                self.outbox.forget(&config_id);
                let unsubscribe = PushMsg::Unsubscribe {
                    config_id,
                    conn: myself.get_id(),
                };
                let _ = crate::actors::tell(&self.registry, messages::NAME, unsubscribe);
                Ok(())
            }
            Err(e) => {
                self.reply(json!({"type": "error", "message": format!("unreadable message: {e}")}));
                Ok(())
            }
        }
    }

    async fn subscribe(
        &mut self,
        myself: &ActorRef<ConnectionMsg>,
        config_id: String,
        secret: &str,
        revision: Option<i64>,
    ) -> Result<(), ActorProcessingErr> {
        let refuse = |message: String| json!({"type": "error", "config_id": config_id, "message": message});
        if !self.subscriptions.contains(&config_id) && self.subscriptions.len() >= self.settings.max_subscriptions {
            let limit = self.settings.max_subscriptions;
            self.reply(refuse(format!("a socket may follow at most {limit} configs")));
            return Ok(());
        }
        // The store's, not memory's: a subscriber learns the newest revision.
        let config = match self.store.existing_config(&config_id).await {
            Ok(config) => config,
            Err(e) => {
                self.reply(refuse(e.to_string()));
                return Ok(());
            }
        };
        if !config.accepts_secret(secret, crate::domain::model::now_millis()) {
            self.reply(refuse("wrong secret".into()));
            return Ok(());
        }
        let current = self.register(myself, &config_id).await?;
        self.secrets.insert(config_id.clone(), (secret.to_owned(), None));
        if !self.check_secret(myself, &config_id).await {
            return Ok(());
        }
        self.reply(json!({"type": "subscribed", "config_id": config_id, "revision": current}));
        if revision.is_none_or(|r| r < current) {
            self.outbox.push(ChangeNotice {
                config_id,
                revision: current,
                update_time: now_millis() / 1000,
                manual: false,
            });
        }
        Ok(())
    }

    /// Follows a registry service, if the socket's token may read it.
    async fn follow(&mut self, myself: &ActorRef<ConnectionMsg>, service: String, revision: Option<i64>) {
        let room = self.follows.contains_key(&service)
            || self.subscriptions.len() + self.follows.len() < self.settings.max_subscriptions;
        let most = self.settings.max_subscriptions;
        let allowed = follow::allowed(self.services.as_deref(), self.reader.as_ref(), &service, room, most);
        match allowed.await {
            Err(message) => self.reply(json!({"type": "error", "service": service, "message": message})),
            Ok(feed) => {
                let members = feed.follow(&service);
                let current = members.borrow().revision;
                let task = follow::forward(members, revision, myself.clone());
                if let Some(old) = self.follows.insert(service.clone(), task) {
                    old.abort();
                }
                self.reply(json!({"type": "subscribed", "service": service, "revision": current}));
            }
        }
    }

    fn reply(&mut self, body: serde_json::Value) {
        self.replies.push(Message::Text(body.to_string().into()));
    }
}

async fn read_loop(mut stream: SplitStream<WebSocket>, me: ActorRef<ConnectionMsg>, ping_every: Duration) {
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    loop {
        let message = tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => ConnectionMsg::Text(text.to_string()),
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => ConnectionMsg::Heard,
            },
            _ = ping.tick() => ConnectionMsg::Tick,
        };
        if me.cast(message).is_err() {
            return;
        }
    }
    let _ = me.cast(ConnectionMsg::PeerGone);
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut batches: mpsc::Receiver<Vec<Message>>,
    me: ActorRef<ConnectionMsg>,
    limit: Duration,
) {
    while let Some(batch) = batches.recv().await {
        let closing = batch.iter().any(|m| matches!(m, Message::Close(_)));
        let write = async {
            for message in batch {
                sink.feed(message).await?;
            }
            sink.flush().await
        };
        match tokio::time::timeout(limit, write).await {
            Ok(Ok(())) if closing => return,
            Ok(Ok(())) => {
                if me.cast(ConnectionMsg::WriterIdle).is_err() {
                    break;
                }
            }
            Ok(Err(e)) => {
                let _ = me.cast(ConnectionMsg::WriterFailed(format!("write failed: {e}")));
                return;
            }
            Err(_) => {
                let _ = me.cast(ConnectionMsg::WriterFailed(format!("socket blocked for {limit:?}")));
                return;
            }
        }
    }
    let _ = tokio::time::timeout(limit, sink.close()).await;
}
