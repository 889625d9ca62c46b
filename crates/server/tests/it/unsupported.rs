//! Client requests for features wshub does not implement get the answer
//! Centrifugo gives where the feature is off, never a reply that pretends
//! it is on.

use crate::support::{dev_config, start, Client};

#[tokio::test]
async fn delta_request_subscribes_without_delta_and_publications_stay_full() {
    let srv = start(dev_config()).await;
    let (mut c, _) = Client::connected(&srv.ws_url()).await;
    let r = c
        .call(r#""subscribe":{"channel":"prices","delta":"fossil"}"#)
        .await;
    assert!(r.error.is_none(), "{r:?}");
    let res = r.subscribe.expect("subscribe result");
    assert!(!res.delta, "delta must not be reported on: {res:?}");
    srv.api("publish", r#"{"channel":"prices","data":{"p":1}}"#)
        .await;
    let p = c.data_push().await.publication.expect("publication");
    assert!(!p.delta);
    assert_eq!(&p.data[..], br#"{"p":1}"#);
    srv.shutdown().await;
}

#[tokio::test]
async fn tags_filter_on_subscribe_is_refused_with_107() {
    let srv = start(dev_config()).await;
    let (mut c, _) = Client::connected(&srv.ws_url()).await;
    let r = c
        .call(r#""subscribe":{"channel":"ticks","tf":{"key":"sector","cmp":"eq","val":"tech"}}"#)
        .await;
    assert_eq!(r.error.as_ref().map(|e| e.code), Some(107), "{r:?}");
    // Not subscribed: the same subscribe without the filter works.
    let r = c.call(r#""subscribe":{"channel":"ticks"}"#).await;
    assert!(r.error.is_none(), "{r:?}");
    srv.shutdown().await;
}
