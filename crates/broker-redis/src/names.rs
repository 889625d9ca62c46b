//! Key and PUB/SUB channel names (the layout is in the crate docs).

/// Builds every name from the prefix.
#[derive(Debug)]
pub(crate) struct Names {
    prefix: String,
    /// `{prefix}.client.`: PUB/SUB channel of a gateway channel, without it.
    client: String,
    /// `{prefix}.control`.
    pub(crate) control: String,
    /// `{prefix}.probe.{node}`: this broker's private probe channel.
    pub(crate) probe: String,
}

impl Names {
    pub(crate) fn new(prefix: &str, node: &str) -> Self {
        Names {
            prefix: prefix.to_owned(),
            client: format!("{prefix}.client."),
            control: format!("{prefix}.control"),
            probe: format!("{prefix}.probe.{node}"),
        }
    }

    /// The PUB/SUB channel of gateway channel `channel`.
    pub(crate) fn pubsub(&self, channel: &str) -> String {
        format!("{}{channel}", self.client)
    }

    /// The gateway channel of a PUB/SUB channel name, if it is one.
    pub(crate) fn channel_of<'a>(&self, pubsub: &'a str) -> Option<&'a str> {
        pubsub.strip_prefix(&self.client)
    }

    /// History stream (Redis Stream, entry ids `<offset>-0`).
    pub(crate) fn stream(&self, channel: &str) -> String {
        format!("{}.history.{{{channel}}}", self.prefix)
    }

    /// Stream position (hash: `e` epoch, `o` top offset, `t` last publish ms).
    pub(crate) fn meta(&self, channel: &str) -> String {
        format!("{}.history.meta.{{{channel}}}", self.prefix)
    }

    /// An idempotency key of `channel`.
    pub(crate) fn idempotency(&self, channel: &str, key: &str) -> String {
        format!("{}.idempotency.{{{channel}}}.{key}", self.prefix)
    }

    /// Presence keys: infos, expiries, users.
    pub(crate) fn presence(&self, channel: &str) -> [String; 3] {
        [
            format!("{}.presence.data.{{{channel}}}", self.prefix),
            format!("{}.presence.expire.{{{channel}}}", self.prefix),
            format!("{}.presence.user.{{{channel}}}", self.prefix),
        ]
    }

    /// Node registry keys: infos, expiries.
    pub(crate) fn nodes(&self) -> [String; 2] {
        [
            format!("{}.nodes.data.{{nodes}}", self.prefix),
            format!("{}.nodes.expire.{{nodes}}", self.prefix),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channels_keys_share_one_hash_tag() {
        let n = Names::new("app", "n1");
        let ch = "news:42";
        let tag = |k: &str| {
            let open = k.find('{').unwrap();
            let close = open + k[open..].find('}').unwrap();
            k[open + 1..close].to_owned()
        };
        let mut keys = vec![n.stream(ch), n.meta(ch), n.idempotency(ch, "k")];
        keys.extend(n.presence(ch));
        for k in &keys {
            assert!(k.starts_with("app."), "{k}");
            assert_eq!(tag(k), ch, "{k}");
        }
        assert_eq!(n.pubsub(ch), "app.client.news:42");
        assert_eq!(n.channel_of("app.client.news:42"), Some(ch));
        assert_eq!(n.channel_of(&n.control), None);
        assert_eq!(n.channel_of(&n.probe), None);
    }
}
