//! The user-facing handles: [`Client`] and [`Subscription`].

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use wshub_protocol::{
    ClientInfo, Command, HistoryRequest, HistoryResult, PresenceRequest, PresenceStatsRequest,
    PresenceStatsResult, PublishRequest, Reply, RpcRequest, SendRequest, StreamPosition,
};

use crate::config::{ClientConfig, HistoryOptions, SubscriptionConfig};
use crate::error::Error;
use crate::task::{Control, Task};
use crate::{ClientEvent, State, SubscriptionEvent, SubscriptionState};

/// A connection to a Centrifugo-protocol server that reconnects by itself.
///
/// Cheap to clone; all clones drive the same connection. The background
/// task ends when the last clone (and the last [`Subscription`]) is dropped.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ctl: mpsc::UnboundedSender<Control>,
    state: watch::Receiver<State>,
    timeout: Duration,
    channels: Mutex<HashSet<String>>,
}

impl Client {
    /// Creates a client for `url` (`ws://` or `wss://`) and starts its
    /// background task; it stays [`State::Disconnected`] until
    /// [`connect`](Self::connect). Returns the client's event stream with it.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn new(
        url: impl Into<String>,
        config: ClientConfig,
    ) -> (Client, mpsc::UnboundedReceiver<ClientEvent>) {
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(State::Disconnected);
        let timeout = config.timeout;
        let task = Task::new(
            url.into(),
            config,
            (ctl_tx.downgrade(), ctl_rx),
            events_tx,
            state_tx,
        );
        tokio::spawn(task.run());
        let inner = Inner {
            ctl: ctl_tx,
            state: state_rx,
            timeout,
            channels: Mutex::new(HashSet::new()),
        };
        (
            Client {
                inner: Arc::new(inner),
            },
            events_rx,
        )
    }

    fn control(&self, c: Control) -> Result<(), Error> {
        self.inner.ctl.send(c).map_err(|_| Error::Closed)
    }

    /// Starts connecting (and keeps reconnecting, see the crate docs).
    /// Returns at once; watch the events or [`wait_state`](Self::wait_state).
    pub fn connect(&self) -> Result<(), Error> {
        self.control(Control::Connect)
    }

    /// Closes the connection and stops reconnecting. Subscriptions keep
    /// their wish to be subscribed and their recovery position: after the
    /// next [`connect`](Self::connect) they are subscribed again and recover.
    pub fn disconnect(&self) -> Result<(), Error> {
        self.control(Control::Disconnect)
    }

    /// The current state.
    pub fn state(&self) -> State {
        *self.inner.state.borrow()
    }

    /// Waits until the client is in `state`, at most `timeout`.
    ///
    /// **Cancel safety:** cancel safe (it only watches).
    pub async fn wait_state(&self, state: State, timeout: Duration) -> Result<(), Error> {
        let mut rx = self.inner.state.clone();
        let result = match tokio::time::timeout(timeout, rx.wait_for(|s| *s == state)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout),
        };
        result
    }

    /// Sends a command and waits for its reply. While connecting, the
    /// command waits for the connection; when disconnected it fails at once.
    ///
    /// **Cancel safety:** cancelling abandons the reply; the command may
    /// still be sent.
    pub(crate) async fn call(&self, cmd: Command) -> Result<Reply, Error> {
        let (tx, rx) = oneshot::channel();
        self.control(Control::Call {
            cmd: Box::new(cmd),
            reply: tx,
            needs_reply: true,
        })?;
        let reply = match tokio::time::timeout(self.inner.timeout, rx).await {
            Err(_) => return Err(Error::Timeout),
            Ok(Err(_)) => return Err(Error::Closed),
            Ok(Ok(reply)) => reply?,
        };
        match reply.error {
            Some(e) => Err(e.into()),
            None => Ok(reply),
        }
    }

    /// Calls the server's RPC `method` with `data`; returns the result data.
    ///
    /// **Cancel safety:** cancelling abandons the reply; the call may still
    /// be made.
    pub async fn rpc(
        &self,
        method: impl Into<String>,
        data: impl Into<Bytes>,
    ) -> Result<Bytes, Error> {
        let reply = self
            .call(Command {
                rpc: Some(RpcRequest {
                    method: method.into(),
                    data: data.into(),
                }),
                ..Command::default()
            })
            .await?;
        Ok(reply.rpc.map(|r| r.data).unwrap_or_default())
    }

    /// Sends an asynchronous message to the server (no reply). Returns once
    /// it is queued on the connection, in order with the other commands
    /// (waits for a connection while connecting; waits for the write queue
    /// to drain when the server reads slowly).
    ///
    /// **Cancel safety:** cancelling may or may not send the message.
    pub async fn send(&self, data: impl Into<Bytes>) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.control(Control::Call {
            cmd: Box::new(Command {
                send: Some(SendRequest { data: data.into() }),
                ..Command::default()
            }),
            reply: tx,
            needs_reply: false,
        })?;
        match tokio::time::timeout(self.inner.timeout, rx).await {
            Err(_) => Err(Error::Timeout),
            Ok(Err(_)) => Err(Error::Closed),
            Ok(Ok(r)) => r.map(|_| ()),
        }
    }

    /// Publishes `data` into `channel`.
    ///
    /// **Cancel safety:** cancelling abandons the reply; the publication may
    /// still happen.
    pub async fn publish(
        &self,
        channel: impl Into<String>,
        data: impl Into<Bytes>,
    ) -> Result<(), Error> {
        self.call(Command {
            publish: Some(PublishRequest {
                channel: channel.into(),
                data: data.into(),
                ..PublishRequest::default()
            }),
            ..Command::default()
        })
        .await
        .map(|_| ())
    }

    /// The clients present in `channel`, by client id.
    ///
    /// **Cancel safety:** cancel safe (a read).
    pub async fn presence(
        &self,
        channel: impl Into<String>,
    ) -> Result<BTreeMap<String, ClientInfo>, Error> {
        let reply = self
            .call(Command {
                presence: Some(PresenceRequest {
                    channel: channel.into(),
                }),
                ..Command::default()
            })
            .await?;
        Ok(reply.presence.map(|p| p.presence).unwrap_or_default())
    }

    /// How many clients and users are present in `channel`.
    ///
    /// **Cancel safety:** cancel safe (a read).
    pub async fn presence_stats(
        &self,
        channel: impl Into<String>,
    ) -> Result<PresenceStatsResult, Error> {
        let reply = self
            .call(Command {
                presence_stats: Some(PresenceStatsRequest {
                    channel: channel.into(),
                }),
                ..Command::default()
            })
            .await?;
        Ok(reply.presence_stats.unwrap_or_default())
    }

    /// The history of `channel`.
    ///
    /// **Cancel safety:** cancel safe (a read).
    pub async fn history(
        &self,
        channel: impl Into<String>,
        opts: HistoryOptions,
    ) -> Result<HistoryResult, Error> {
        let reply = self
            .call(Command {
                history: Some(HistoryRequest {
                    channel: channel.into(),
                    limit: opts.limit,
                    since: opts
                        .since
                        .map(|(offset, epoch)| StreamPosition { offset, epoch }),
                    reverse: opts.reverse,
                }),
                ..Command::default()
            })
            .await?;
        Ok(reply.history.unwrap_or_default())
    }

    /// Creates a subscription to `channel` (unsubscribed until
    /// [`Subscription::subscribe`]) and its event stream. One subscription
    /// per channel and client.
    pub fn new_subscription(
        &self,
        channel: impl Into<String>,
        config: SubscriptionConfig,
    ) -> Result<(Subscription, mpsc::UnboundedReceiver<SubscriptionEvent>), Error> {
        let channel = channel.into();
        {
            let mut channels = self
                .inner
                .channels
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !channels.insert(channel.clone()) {
                return Err(Error::DuplicateSubscription(channel));
            }
        }
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(SubscriptionState::Unsubscribed);
        self.control(Control::NewSub {
            channel: channel.clone(),
            config,
            events: events_tx,
            state: state_tx,
        })?;
        let sub = Subscription {
            channel,
            client: self.clone(),
            state: state_rx,
        };
        Ok((sub, events_rx))
    }

    /// Unsubscribes `sub` and forgets it, so that its channel can be
    /// subscribed anew with [`new_subscription`](Self::new_subscription).
    pub fn remove_subscription(&self, sub: Subscription) -> Result<(), Error> {
        self.inner
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&sub.channel);
        self.control(Control::RemoveSub(sub.channel.clone()))
    }
}

/// A subscription to one channel of a [`Client`].
#[derive(Clone, Debug)]
pub struct Subscription {
    channel: String,
    client: Client,
    state: watch::Receiver<SubscriptionState>,
}

impl Subscription {
    /// The channel.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The current state.
    pub fn state(&self) -> SubscriptionState {
        *self.state.borrow()
    }

    /// Waits until the subscription is in `state`, at most `timeout`.
    ///
    /// **Cancel safety:** cancel safe (it only watches).
    pub async fn wait_state(
        &self,
        state: SubscriptionState,
        timeout: Duration,
    ) -> Result<(), Error> {
        let mut rx = self.state.clone();
        let result = match tokio::time::timeout(timeout, rx.wait_for(|s| *s == state)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout),
        };
        result
    }

    /// Starts subscribing (now if connected, else once connected) and
    /// stays subscribed across reconnects until [`unsubscribe`](Self::unsubscribe).
    pub fn subscribe(&self) -> Result<(), Error> {
        self.client
            .control(Control::Subscribe(self.channel.clone()))
    }

    /// Unsubscribes and forgets the recovery position.
    pub fn unsubscribe(&self) -> Result<(), Error> {
        self.client
            .control(Control::Unsubscribe(self.channel.clone()))
    }

    /// Publishes `data` into the channel.
    ///
    /// **Cancel safety:** as [`Client::publish`].
    pub async fn publish(&self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.client.publish(self.channel.clone(), data).await
    }

    /// The clients present in the channel.
    ///
    /// **Cancel safety:** cancel safe.
    pub async fn presence(&self) -> Result<BTreeMap<String, ClientInfo>, Error> {
        self.client.presence(self.channel.clone()).await
    }

    /// Presence counts of the channel.
    ///
    /// **Cancel safety:** cancel safe.
    pub async fn presence_stats(&self) -> Result<PresenceStatsResult, Error> {
        self.client.presence_stats(self.channel.clone()).await
    }

    /// The channel's history.
    ///
    /// **Cancel safety:** cancel safe.
    pub async fn history(&self, opts: HistoryOptions) -> Result<HistoryResult, Error> {
        self.client.history(self.channel.clone(), opts).await
    }
}
