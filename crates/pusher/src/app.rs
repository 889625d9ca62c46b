//! The configured apps: looked up by key (clients) and by id (the API),
//! each with its connection count.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use wshub_config::{PusherApp, PusherConfig};

/// One app and its live state on this node.
#[derive(Debug)]
pub struct App {
    config: PusherApp,
    /// `$pusher/{app_id}/`: the start of its channels on the node.
    prefix: String,
    connections: AtomicU64,
}

impl App {
    /// An app from its configuration.
    pub fn new(config: PusherApp) -> Self {
        App {
            prefix: format!("{}{}/", wshub_config::FRONT_CHANNEL_PREFIX, config.app_id),
            config,
            connections: AtomicU64::new(0),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &PusherApp {
        &self.config
    }

    /// The start of its channels' names on the node.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Counts a new connection; false (and not counted) over
    /// `max_connections`.
    pub fn try_connect(&self) -> bool {
        let max = self.config.max_connections;
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (max == 0 || n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// A counted connection ended.
    pub fn disconnect(&self) {
        let _ = self
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Open connections on this node.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Acquire)
    }
}

/// Every configured app.
#[derive(Debug, Default)]
pub struct Apps {
    by_key: HashMap<String, Arc<App>>,
    by_id: HashMap<String, Arc<App>>,
}

impl Apps {
    /// The apps of the `pusher` section (none when it is off).
    pub fn new(config: &PusherConfig) -> Self {
        let mut apps = Apps::default();
        if !config.enabled {
            return apps;
        }
        for a in &config.apps {
            let app = Arc::new(App::new(a.clone()));
            apps.by_key.insert(a.key.clone(), app.clone());
            apps.by_id.insert(a.app_id.clone(), app);
        }
        apps
    }

    /// Whether there is no app (the front is off).
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The app clients connect to with `key`.
    pub fn by_key(&self, key: &str) -> Option<&Arc<App>> {
        self.by_key.get(key)
    }

    /// The app of the API's `/apps/{app_id}`.
    pub fn by_id(&self, id: &str) -> Option<&Arc<App>> {
        self.by_id.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_up_to_the_limit() {
        let mut c = PusherApp::default();
        c.app_id = "1".into();
        c.max_connections = 2;
        let app = App::new(c);
        assert_eq!(app.prefix(), "$pusher/1/");
        assert!(app.try_connect());
        assert!(app.try_connect());
        assert!(!app.try_connect());
        app.disconnect();
        assert!(app.try_connect());
        assert_eq!(app.connections(), 2);
    }
}
