//! The transport against fake nodes on loopback: the token travels, and a
//! node that names the leader in an `UNAVAILABLE` sends the call there, once.

use std::net::SocketAddr;

use switchboard_proto::v1::node_client::NodeClient;
use switchboard_proto::v1::node_server::{Node, NodeServer};
use switchboard_proto::v1::{StatusRequest, StatusResponse};
use tokio_stream::wrappers::TcpListenerStream;

use super::*;

/// A node that answers Status with its id and the token it saw as role,
/// or, when `leader` is set, refuses with the leader's address.
struct Fake {
    id: u64,
    leader: Option<String>,
}

#[tonic::async_trait]
impl Node for Fake {
    async fn status(&self, request: tonic::Request<StatusRequest>) -> Result<tonic::Response<StatusResponse>, tonic::Status> {
        if let Some(leader) = &self.leader {
            let mut s = tonic::Status::unavailable("not the leader");
            s.metadata_mut().insert(switchboard_proto::LEADER_API_METADATA, leader.parse().unwrap());
            return Err(s);
        }
        let token = request.metadata().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        Ok(tonic::Response::new(StatusResponse { node_id: self.id, role: token, ..Default::default() }))
    }
}

async fn serve(node: Fake) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder().add_service(NodeServer::new(node)).serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

async fn status_of(t: &Transport) -> crate::Result<StatusResponse> {
    t.call(|ch| async move { Ok(NodeClient::new(ch).status(StatusRequest {}).await.map_err(status)?.into_inner()) }).await
}

#[tokio::test]
async fn calls_carry_the_token_and_follow_the_leader_once() {
    let leader = serve(Fake { id: 1, leader: None }).await;
    let follower = serve(Fake { id: 2, leader: Some(leader.to_string()) }).await;

    let t = Transport::new(&format!("http://{follower}"), Some(" sbt_secret \n"), false).unwrap();
    let s = status_of(&t).await.unwrap();
    assert_eq!((s.node_id, s.role.as_str()), (1, "Bearer sbt_secret"), "answered by the leader, with the trimmed token");

    // A follower naming another follower as leader: redirected once, then the error.
    let other = serve(Fake { id: 3, leader: Some(follower.to_string()) }).await;
    let t = Transport::new(&format!("http://{other}"), None, false).unwrap();
    let e = status_of(&t).await.unwrap_err();
    let crate::CliError::Status(s) = &e else { panic!("{e:?}") };
    assert_eq!((s.code, s.leader.as_deref()), (tonic::Code::Unavailable, Some(leader.to_string().as_str())));
    assert_eq!(e.to_string(), "Unavailable: not the leader");
}

#[tokio::test]
async fn connection_errors_name_the_server() {
    let t = Transport::new("http://127.0.0.1:1", None, false).unwrap();
    let e = status_of(&t).await.unwrap_err().to_string();
    assert!(e.starts_with("connecting to http://127.0.0.1:1: "), "{e}");
    assert!(Transport::new("http://x", Some("a\u{1}b"), false).unwrap_err().to_string().contains("--token"));
}
