//! Names in the Pusher Channels protocol 7: channel names and the kind of
//! channel their prefix selects, event names and socket ids.
//!
//! A channel name is 1 to 200 bytes of ASCII letters, digits and
//! `_ - = @ , . ;`. Its prefix says what kind of channel it is (`private-`,
//! `private-encrypted-`, `presence-`, or none for a public one) and whether
//! it is a cache channel (`cache-` after the kind, or alone for a public
//! one). `#server-to-user-…` channels are the server's own: the `#` is not
//! in the set above, so clients can never subscribe to them.

/// The longest channel or event name, in bytes.
pub const MAX_NAME_LEN: usize = 200;

/// The longest part of a socket id (`digits.digits`), in digits.
const MAX_SOCKET_ID_PART: usize = 20;

/// Whether `name` is a channel name a client may subscribe to or publish on.
pub fn valid_channel_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';')
        })
}

/// Whether `name` is an acceptable event name: 1 to 200 bytes, no control
/// characters.
pub fn valid_event_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len()) && !name.chars().any(char::is_control)
}

/// Whether `s` is a socket id as the server hands them out: two runs of 1 to
/// 20 ASCII digits joined by a dot, such as `123.456`.
pub fn valid_socket_id(s: &str) -> bool {
    let part = |p: &str| {
        (1..=MAX_SOCKET_ID_PART).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())
    };
    s.split_once('.').is_some_and(|(a, b)| part(a) && part(b))
}

/// The access model of a channel, from its name's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// Anyone may subscribe, without authorization.
    Public,
    /// `private-`: subscribing needs a signature from the app's auth endpoint.
    Private,
    /// `private-encrypted-`: private, and the app encrypts the event data end
    /// to end, so the server cannot read it and clients may not publish.
    PrivateEncrypted,
    /// `presence-`: private, and subscribers see who else is subscribed.
    Presence,
}

/// What a channel name says about the channel: its kind and whether it is a
/// cache channel (which keeps its last event for new subscribers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelType {
    /// The access model.
    pub kind: ChannelKind,
    /// Whether the channel caches its last event.
    pub cache: bool,
}

/// The prefixes, longest first where one begins another.
const PREFIXES: [(&str, ChannelKind, bool); 7] = [
    (
        "private-encrypted-cache-",
        ChannelKind::PrivateEncrypted,
        true,
    ),
    ("private-encrypted-", ChannelKind::PrivateEncrypted, false),
    ("private-cache-", ChannelKind::Private, true),
    ("private-", ChannelKind::Private, false),
    ("presence-cache-", ChannelKind::Presence, true),
    ("presence-", ChannelKind::Presence, false),
    ("cache-", ChannelKind::Public, true),
];

impl ChannelType {
    /// The type of the channel called `name` (which this does not validate).
    pub fn of(name: &str) -> ChannelType {
        PREFIXES
            .iter()
            .find(|(prefix, _, _)| name.starts_with(prefix))
            .map_or(
                ChannelType {
                    kind: ChannelKind::Public,
                    cache: false,
                },
                |&(_, kind, cache)| ChannelType { kind, cache },
            )
    }

    /// Whether subscribing needs an `auth` signature (every kind but public).
    pub fn needs_auth(self) -> bool {
        self.kind != ChannelKind::Public
    }

    /// Whether this is a presence channel.
    pub fn is_presence(self) -> bool {
        self.kind == ChannelKind::Presence
    }

    /// Whether this is an end-to-end encrypted channel.
    pub fn is_encrypted(self) -> bool {
        self.kind == ChannelKind::PrivateEncrypted
    }

    /// Whether subscribed clients may publish `client-` events here: on
    /// private and presence channels only (not public ones, and not encrypted
    /// ones, whose clients cannot encrypt for each other).
    pub fn allows_client_events(self) -> bool {
        matches!(self.kind, ChannelKind::Private | ChannelKind::Presence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names() {
        for ok in [
            "a",
            "my-channel",
            "private-foo_bar",
            "presence-room=1@x,y.z;w",
            "ABCxyz0189",
            "private-encrypted-cache-x",
        ] {
            assert!(valid_channel_name(ok), "{ok}");
        }
        assert!(valid_channel_name(&"a".repeat(MAX_NAME_LEN)));
        for bad in [
            "",
            "#server-to-user-1",
            "with space",
            "slash/",
            "colon:",
            "star*",
            "quote\"",
            "new\nline",
            "nul\0",
            "caf\u{e9}",
            "\u{ff41}", // fullwidth a
        ] {
            assert!(!valid_channel_name(bad), "{bad:?}");
        }
        assert!(!valid_channel_name(&"a".repeat(MAX_NAME_LEN + 1)));
    }

    #[test]
    fn event_names() {
        for ok in [
            "e",
            "client-typing",
            "my event: with spaces",
            "caf\u{e9} \u{2603}",
        ] {
            assert!(valid_event_name(ok), "{ok}");
        }
        assert!(valid_event_name(&"e".repeat(MAX_NAME_LEN)));
        // The limit is in bytes: 100 two-byte characters fit, 101 do not.
        assert!(valid_event_name(&"\u{e9}".repeat(100)));
        assert!(!valid_event_name(&"\u{e9}".repeat(101)));
        for bad in ["", "tab\t", "nl\n", "nul\0", "del\u{7f}", "c1\u{85}"] {
            assert!(!valid_event_name(bad), "{bad:?}");
        }
        assert!(!valid_event_name(&"e".repeat(MAX_NAME_LEN + 1)));
    }

    #[test]
    fn socket_ids() {
        for ok in [
            "1.2",
            "123.456",
            "0.0",
            "12345678901234567890.12345678901234567890",
        ] {
            assert!(valid_socket_id(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "1.",
            ".1",
            "1",
            "1.2.3",
            "a.1",
            "1.b",
            "-1.2",
            "+1.2",
            " 1.2",
            "1.2 ",
            "1,2",
            "123456789012345678901.1",
            "1.123456789012345678901",
            "\u{663}.1", // Arabic-Indic digit three
        ] {
            assert!(!valid_socket_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn channel_types() {
        use ChannelKind::*;
        let cases = [
            ("my-channel", Public, false),
            ("cache-news", Public, true),
            ("private-x", Private, false),
            ("private-cache-x", Private, true),
            ("private-encrypted-x", PrivateEncrypted, false),
            ("private-encrypted-cache-x", PrivateEncrypted, true),
            ("presence-x", Presence, false),
            ("presence-cache-x", Presence, true),
            // Prefixes only count at the start, in full.
            ("public-private-x", Public, false),
            ("privatex", Public, false),
            ("presencex", Public, false),
            ("cachex", Public, false),
            ("private-presence-x", Private, false),
            ("private-cache", Private, false),
            ("private-encrypted", Private, false),
        ];
        for (name, kind, cache) in cases {
            assert_eq!(ChannelType::of(name), ChannelType { kind, cache }, "{name}");
        }
    }

    #[test]
    fn channel_type_predicates() {
        // (name, needs_auth, is_presence, is_encrypted, allows_client_events)
        let cases = [
            ("public", false, false, false, false),
            ("cache-public", false, false, false, false),
            ("private-a", true, false, false, true),
            ("private-cache-a", true, false, false, true),
            ("private-encrypted-a", true, false, true, false),
            ("private-encrypted-cache-a", true, false, true, false),
            ("presence-a", true, true, false, true),
            ("presence-cache-a", true, true, false, true),
        ];
        for (name, auth, presence, encrypted, client) in cases {
            let t = ChannelType::of(name);
            assert_eq!(t.needs_auth(), auth, "{name}");
            assert_eq!(t.is_presence(), presence, "{name}");
            assert_eq!(t.is_encrypted(), encrypted, "{name}");
            assert_eq!(t.allows_client_events(), client, "{name}");
        }
    }
}
