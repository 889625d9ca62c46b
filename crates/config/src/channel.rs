//! Channel options, namespaces, and resolving a channel name to its options.

use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{Config, Duration};

/// Options of a group of channels (`channel.without_namespace` or one entry
/// of `channel.namespaces`). Names and defaults are Centrifugo v6's; every
/// boolean defaults to `false` and every permission is off until granted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct ChannelOptions {
    /// `presence`: keep online presence.
    pub presence: bool,
    /// `join_leave`: emit join/leave events.
    pub join_leave: bool,
    /// `force_push_join_leave`: push join/leave to every subscriber without asking.
    pub force_push_join_leave: bool,
    /// `join_leave_max_subscribers` (wshub only, not a Centrifugo key): a
    /// node stops pushing join/leave events of a channel to its local
    /// subscribers while it has more than this many of them (counted in
    /// `wshub_node_join_leave_muted_total`, logged once each time a channel
    /// crosses it), and resumes at or below it. Every join would otherwise
    /// be pushed to every subscriber: N joins cost N²/2 pushes. Default
    /// 1000; 0 = no limit.
    pub join_leave_max_subscribers: JoinLeaveLimit,
    /// `history_size`: publications kept per channel (needs `history_ttl`).
    pub history_size: u32,
    /// `history_ttl`: how long history is kept (whole seconds; needs `history_size`).
    pub history_ttl: Duration,
    /// `history_meta_ttl`: overrides `channel.history_meta_ttl` when non-zero.
    pub history_meta_ttl: Duration,
    /// `force_positioning`: track stream position for every subscriber.
    pub force_positioning: bool,
    /// `allow_positioning`: let clients ask for positioning.
    pub allow_positioning: bool,
    /// `force_recovery`: recover missed publications on resubscribe for everyone.
    pub force_recovery: bool,
    /// `allow_recovery`: let clients ask for recovery.
    pub allow_recovery: bool,
    /// `force_recovery_mode`: `""`/`stream` (default); `cache` is not
    /// implemented by wshub (validation refuses it).
    pub force_recovery_mode: String,
    /// `auto_cache_recover`: in cache mode, send the latest publication on
    /// subscribe. Not implemented by wshub (validation refuses it).
    pub auto_cache_recover: bool,
    /// `allowed_delta_types`: delta compressions clients may ask for
    /// (`fossil`). Not implemented by wshub: validation refuses a non-empty
    /// list, and a subscribe asking for delta gets `delta: false`.
    pub allowed_delta_types: Vec<String>,
    /// `delta_publish`: publish with delta by default. Not implemented by
    /// wshub (validation refuses it).
    pub delta_publish: bool,
    /// `allow_tags_filter`: let subscribers filter publications by tags.
    /// Not implemented by wshub (validation refuses it); a subscribe with a
    /// tags filter gets 107 bad request.
    pub allow_tags_filter: bool,
    /// `allow_subscribe_for_anonymous`: with `allow_subscribe_for_client`,
    /// anonymous users may subscribe too.
    pub allow_subscribe_for_anonymous: bool,
    /// `allow_subscribe_for_client`: authenticated clients may subscribe
    /// without a subscription token.
    pub allow_subscribe_for_client: bool,
    /// `allow_publish_for_anonymous`: with one of the publish permissions,
    /// anonymous users may publish too.
    pub allow_publish_for_anonymous: bool,
    /// `allow_publish_for_subscriber`: subscribers may publish.
    pub allow_publish_for_subscriber: bool,
    /// `allow_publish_for_client`: any authenticated client may publish.
    pub allow_publish_for_client: bool,
    /// `allow_presence_for_anonymous`.
    pub allow_presence_for_anonymous: bool,
    /// `allow_presence_for_subscriber`.
    pub allow_presence_for_subscriber: bool,
    /// `allow_presence_for_client`.
    pub allow_presence_for_client: bool,
    /// `allow_history_for_anonymous`.
    pub allow_history_for_anonymous: bool,
    /// `allow_history_for_subscriber`.
    pub allow_history_for_subscriber: bool,
    /// `allow_history_for_client`.
    pub allow_history_for_client: bool,
    /// `allow_user_limited_channels`: `name#42,43` channels admit only users 42 and 43.
    pub allow_user_limited_channels: bool,
    /// `channel_regex`: the part after the namespace must match (RE2-like syntax).
    pub channel_regex: String,
    /// `publication_data_format`: `""` (any), `json`, `json_object` or
    /// `binary`. The checks are not implemented by wshub: validation
    /// refuses any value but `""`.
    pub publication_data_format: String,
    /// `subscribe_proxy_enabled`: not supported by wshub (validation refuses it).
    pub subscribe_proxy_enabled: bool,
    /// `publish_proxy_enabled`: not supported by wshub (validation refuses it).
    pub publish_proxy_enabled: bool,
    /// `sub_refresh_proxy_enabled`: not supported by wshub (validation refuses it).
    pub sub_refresh_proxy_enabled: bool,
    /// `subscribe_stream_proxy_enabled`: not supported by wshub (validation refuses it).
    pub subscribe_stream_proxy_enabled: bool,
    /// `subscription_type`: only `""`/`stream` is supported by wshub.
    pub subscription_type: String,
    #[serde(skip)]
    regex: RegexCache,
}

/// `join_leave_max_subscribers`: a subscriber count, 0 = no limit; default
/// [`JoinLeaveLimit::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JoinLeaveLimit(pub u32);

impl JoinLeaveLimit {
    /// The default limit: 1000 subscribers (at most ~500,000 join pushes
    /// while a channel fills up on a node).
    pub const DEFAULT: JoinLeaveLimit = JoinLeaveLimit(1000);
}

impl Default for JoinLeaveLimit {
    fn default() -> Self {
        JoinLeaveLimit::DEFAULT
    }
}

impl ChannelOptions {
    /// True when history is kept (`history_size` and `history_ttl` both set).
    pub fn history_enabled(&self) -> bool {
        self.history_size > 0 && !self.history_ttl.is_zero()
    }

    /// The compiled `channel_regex` (`None` when empty or invalid; validation
    /// reports invalid ones). Compiled once, on first use.
    pub fn channel_regex(&self) -> Option<&Regex> {
        if self.channel_regex.is_empty() {
            return None;
        }
        self.regex
            .0
            .get_or_init(|| Regex::new(&self.channel_regex).ok())
            .as_ref()
    }
}

/// A lazily compiled regex; equal whenever the source strings are (they are
/// compared by the owning struct).
#[derive(Debug, Clone, Default)]
struct RegexCache(OnceLock<Option<Regex>>);

impl PartialEq for RegexCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// One entry of `channel.namespaces`: a `name` plus channel options at the
/// same level (`{"name": "chat", "presence": true}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct ChannelNamespace {
    /// `name`: `^[-a-zA-Z0-9_.]{2,}$`, unique.
    pub name: String,
    /// The options.
    #[serde(flatten)]
    pub options: ChannelOptions,
}

impl ChannelNamespace {
    /// A namespace with default options.
    pub fn new(name: impl Into<String>) -> Self {
        ChannelNamespace {
            name: name.into(),
            options: ChannelOptions::default(),
        }
    }

    /// Replace the options (by value, for building configs in code).
    pub fn with_options(mut self, options: ChannelOptions) -> Self {
        self.options = options;
        self
    }
}

/// Why a channel name is refused. [`ChannelError::code`] gives the
/// Centrifugo error code the gateway answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// Empty channel name. Centrifugo answers a subscribe with an empty
    /// channel by disconnecting (3501 bad request); other commands get 107.
    #[error("empty channel name")]
    Empty,
    /// Longer than `channel.max_length` bytes (107 bad request).
    #[error("channel name is {len} bytes, longer than channel.max_length {max}")]
    TooLong {
        /// Length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not ASCII (107 bad request). Only checked when the namespace has no
    /// `channel_regex`.
    #[error("channel name must be ASCII")]
    NotAscii,
    /// Does not match the namespace's `channel_regex` (107 bad request).
    #[error("channel name does not match channel_regex of its namespace")]
    RegexMismatch,
    /// Starts with [`FRONT_CHANNEL_PREFIX`]: a channel of another front
    /// (the Pusher front's apps), which Centrifugo clients and the server
    /// API cannot reach (102 unknown channel).
    #[error("channels starting with {FRONT_CHANNEL_PREFIX:?} belong to the Pusher front")]
    Reserved,
    /// The namespace is not configured (102 unknown channel).
    #[error("unknown channel namespace {namespace:?}")]
    UnknownNamespace {
        /// The namespace part of the name.
        namespace: String,
    },
}

impl ChannelError {
    /// The Centrifugo client error code: 102 unknown channel or 107 bad request.
    pub fn code(&self) -> u32 {
        match self {
            ChannelError::UnknownNamespace { .. } | ChannelError::Reserved => 102,
            _ => 107,
        }
    }
}

/// A channel name resolved against the configuration.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ResolvedChannel<'a> {
    /// The full channel name, unchanged.
    pub channel: &'a str,
    /// The namespace name, `None` for channels without one.
    pub namespace: Option<&'a str>,
    /// The name after the namespace boundary (the whole name without one).
    pub rest: &'a str,
    /// The effective options.
    pub options: &'a ChannelOptions,
    /// Starts with `channel.private_prefix` (`$`): a subscription token is
    /// required to subscribe.
    pub private: bool,
    /// A user-limited channel (`news#42,43`) in a namespace that allows them.
    pub user_limited: bool,
    publication_data_format: &'a str,
    user_boundary: &'a str,
    user_separator: &'a str,
}

impl<'a> ResolvedChannel<'a> {
    /// The effective `publication_data_format` (the namespace's, else
    /// `channel.publication_data_format`).
    pub fn publication_data_format(&self) -> &'a str {
        self.publication_data_format
    }

    /// The users named after the user boundary (`a#1,2` gives `1`, `2`);
    /// empty when the name has no user boundary.
    pub fn allowed_users(&self) -> impl Iterator<Item = &'a str> + 'a {
        let boundary = self.user_boundary;
        let list = if boundary.is_empty() || !self.channel.contains(boundary) {
            None
        } else {
            self.channel.rsplit(boundary).next()
        };
        let sep = self.user_separator;
        // An empty separator means one user: splitn(1, ..) yields the whole list.
        let n = if sep.is_empty() { 1 } else { usize::MAX };
        list.into_iter().flat_map(move |l| l.splitn(n, sep))
    }

    /// Centrifugo's user check for user-limited channels: true when the name
    /// has no user boundary, or `user` is one of the users after it.
    pub fn user_allowed(&self, user: &str) -> bool {
        if self.user_boundary.is_empty() || !self.channel.contains(self.user_boundary) {
            return true;
        }
        self.allowed_users().any(|u| u == user)
    }
}

/// The node's channels that start with this belong to the Pusher front
/// (`$pusher/{app_id}/{channel}`): the Centrifugo protocol and server API
/// refuse them ([`ChannelError::Reserved`]), so one front's clients never
/// reach another's channels.
pub const FRONT_CHANNEL_PREFIX: &str = "$pusher/";

/// Resolve `channel` to its namespace and effective options, with the
/// Centrifugo name rules: length (`channel.max_length`), namespace
/// (`ns:rest`, after stripping the private prefix `$`), then the namespace's
/// `channel_regex` on `rest` or, without one, ASCII only.
pub fn channel_options<'a>(
    config: &'a Config,
    channel: &'a str,
) -> Result<ResolvedChannel<'a>, ChannelError> {
    let cc = &config.channel;
    if channel.is_empty() {
        return Err(ChannelError::Empty);
    }
    if channel.starts_with(FRONT_CHANNEL_PREFIX) {
        return Err(ChannelError::Reserved);
    }
    let max = cc.max_length as usize;
    if max > 0 && channel.len() > max {
        return Err(ChannelError::TooLong {
            len: channel.len(),
            max,
        });
    }
    let trimmed = if cc.private_prefix.is_empty() {
        channel
    } else {
        channel
            .strip_prefix(cc.private_prefix.as_str())
            .unwrap_or(channel)
    };
    let (namespace, rest) = match (cc.namespace_boundary.as_str(), trimmed) {
        ("", _) => (None, channel),
        (b, t) => match t.split_once(b) {
            Some((ns, rest)) => (Some(ns), rest),
            None => (None, channel),
        },
    };
    // Like Centrifugo, an empty namespace part (":x") means no namespace.
    let options = match namespace {
        None | Some("") => &cc.without_namespace,
        Some(ns) => match cc.namespaces.iter().find(|n| n.name == ns) {
            Some(n) => &n.options,
            None => {
                return Err(ChannelError::UnknownNamespace {
                    namespace: ns.to_owned(),
                })
            }
        },
    };
    if !options.channel_regex.is_empty() {
        match options.channel_regex() {
            Some(re) if re.is_match(rest) => {}
            _ => return Err(ChannelError::RegexMismatch),
        }
    } else if !channel.is_ascii() {
        return Err(ChannelError::NotAscii);
    }
    let private = !cc.private_prefix.is_empty() && channel.starts_with(cc.private_prefix.as_str());
    let user_limited = options.allow_user_limited_channels
        && !cc.user_boundary.is_empty()
        && channel.contains(cc.user_boundary.as_str());
    let publication_data_format = if options.publication_data_format.is_empty() {
        cc.publication_data_format.as_str()
    } else {
        options.publication_data_format.as_str()
    };
    Ok(ResolvedChannel {
        channel,
        namespace: namespace.filter(|n| !n.is_empty()),
        rest,
        options,
        private,
        user_limited,
        publication_data_format,
        user_boundary: cc.user_boundary.as_str(),
        user_separator: cc.user_separator.as_str(),
    })
}
