//! Credentials through the CLI against real nodes: no token and bad tokens
//! refused, each role and scope allowed and denied (a tenant token on
//! another tenant's ACME name included), denied calls changing nothing,
//! revocation seen at once, an API beyond loopback refusing to start
//! without auth, and a learner joining with the bootstrap token.

mod common;

use std::time::Duration;

use common::{answers, eventually, query, Node, BIN};
use hickory_proto::rr::RecordType;

const BOOTSTRAP: &str = "bootstrap-admin-0123456789abcdef";

const PROD: &str = "apps.example.test.";
const STAGING: &str = "apps.staging.example.test.";

/// A node that needs tokens, with the bootstrap token in a file.
fn start(root: &std::path::Path, id: u64, rest: &str) -> anyhow::Result<Node> {
    let token_file = root.join("bootstrap.token");
    std::fs::write(&token_file, format!("{BOOTSTRAP}\n"))?;
    let mut node = Node::prepare(root, id)?;
    node.write_config(id, &format!("[api]\nbootstrap_token_file = {:?}\n{rest}", token_file.display().to_string()))?;
    node.token = Some(BOOTSTRAP.into());
    node.spawn()?;
    Ok(node)
}

/// The error of a call that must fail, which must name `code`.
fn refused(node: &Node, token: Option<&str>, args: &[&str], code: &str) -> anyhow::Result<String> {
    match node.cli_as(token, args) {
        Ok(out) => anyhow::bail!("{args:?} with {token:?} succeeded: {out}"),
        Err(e) => {
            let e = e.to_string();
            anyhow::ensure!(e.contains(code), "{args:?} with {token:?}: expected {code}, got {e}");
            Ok(e)
        }
    }
}

fn create_token(node: &Node, args: &[&str]) -> anyhow::Result<String> {
    let v = node.json(&[&["token", "create"][..], args].concat())?;
    v["token"].as_str().map(str::to_string).ok_or_else(|| anyhow::anyhow!("no token in {v}"))
}

fn txt(node: &Node, name: &str) -> anyhow::Result<Vec<String>> {
    Ok(answers(&query(node.dns(), name, RecordType::TXT)?))
}

#[test]
fn each_role_and_scope_is_allowed_its_calls_and_denied_the_rest() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut node = start(dir.path(), 1, "")?;
    node.wait_leader(Duration::from_secs(30))?;

    // No token, a wrong one, a well-formed unknown one: UNAUTHENTICATED.
    refused(&node, None, &["tenant", "list"], "Unauthenticated")?;
    refused(&node, Some("not-the-token-at-all"), &["status"], "Unauthenticated")?;
    refused(&node, Some("sbt_0123456789abcdef_00"), &["status"], "Unauthenticated")?;

    // The bootstrap admin sets the scene.
    for (apex, env) in [(PROD, "prod"), (STAGING, "staging")] {
        let file = dir.path().join(format!("{env}.toml"));
        std::fs::write(&file, common::zone_file(apex, env))?;
        node.cli(&["zone", "put", file.to_str().unwrap_or_default()])?;
    }
    node.cli(&["cluster", "put", "mt1", "--ipv4", "198.51.100.1"])?;
    node.cli(&["cluster", "put", "mt2", "--ipv4", "198.51.100.2"])?;
    node.cli(&["tenant", "create", "t1", "--cluster", "mt1"])?;
    node.cli(&["tenant", "create", "t2", "--cluster", "mt2"])?;
    node.cli(&["tenant", "alias", "add", "t1", "t1-alias"])?;

    let admin = create_token(&node, &["second-admin", "--role", "admin"])?;
    let operator = create_token(&node, &["ops", "--role", "operator"])?;
    let staging = create_token(&node, &["ops-staging", "--role", "operator", "--environments", "staging"])?;
    let staging_zone = create_token(&node, &["ops-zone", "--role", "operator", "--zones", STAGING])?;
    let tenant = create_token(&node, &["robot-t1", "--role", "tenant", "--tenant", "t1"])?;
    // The secret is shown once and never listed.
    let listed = node.cli(&["token", "list", "--json"])?;
    for t in [&admin, &operator, &staging, &staging_zone, &tenant] {
        let secret = t.rsplit('_').next().unwrap_or_default();
        assert!(!listed.contains(secret), "token list shows a secret: {listed}");
    }
    assert_eq!(serde_json::from_str::<serde_json::Value>(&listed)?["credentials"].as_array().map(Vec::len), Some(5));

    let staging_file = dir.path().join("staging.toml");
    let staging_file = staging_file.to_str().unwrap_or_default();
    let prod_file = dir.path().join("prod.toml");
    let prod_file = prod_file.to_str().unwrap_or_default();
    let all = [Some(admin.as_str()), Some(operator.as_str()), Some(staging.as_str()), Some(staging_zone.as_str()), Some(tenant.as_str())];
    // (call, which of [admin, operator, staging operator, staging-zone operator, tenant] may make it)
    let cases: Vec<(Vec<&str>, [bool; 5])> = vec![
        (vec!["zone", "put", staging_file], [true, true, true, true, false]),
        (vec!["zone", "put", prod_file], [true, true, false, false, false]),
        (vec!["zone", "list"], [true, true, true, true, false]),
        (vec!["cluster", "put", "mt3", "--ipv4", "198.51.100.3"], [true, true, false, false, false]),
        (vec!["tenant", "get", "t1"], [true, true, true, true, true]),
        (vec!["tenant", "get", "t2"], [true, true, true, true, false]),
        (vec!["tenant", "list"], [true, true, true, true, false]),
        (vec!["tenant", "alias", "add", "t1", "t1-more"], [true, true, false, false, true]),
        (vec!["tenant", "alias", "add", "t2", "t2-more"], [true, true, false, false, false]),
        (vec!["tenant", "move", "t2", "mt1"], [true, true, false, false, false]),
        (vec!["acme", "set", "t1.apps.example.test", "t1-value"], [true, true, false, false, true]),
        (vec!["acme", "set", "*.t1-alias.apps.example.test", "alias-value"], [true, true, false, false, true]),
        (vec!["acme", "set", "t2.apps.example.test", "t2-value"], [true, true, false, false, false]),
        (vec!["acme", "set", "t2.apps.staging.example.test", "staging-value"], [true, true, true, true, false]),
        (vec!["token", "list"], [true, false, false, false, false]),
        (vec!["member", "list"], [true, true, true, true, true]),
        (vec!["member", "promote", "9"], [true, false, false, false, false]),
    ];
    for (args, allowed) in &cases {
        for (who, allow) in all.iter().zip(allowed) {
            match (node.cli_as(*who, args), allow) {
                (Ok(_), true) => {}
                // Allowed, and then refused for what it asks: node 9 is not a member.
                (Err(e), true) if args[1] == "promote" && !e.to_string().contains("PermissionDenied") => {}
                (Err(e), false) if e.to_string().contains("PermissionDenied") => {}
                (result, _) => panic!("{args:?} with the token {who:?}: expected allowed = {allow}, got {result:?}"),
            }
        }
    }

    // Calls made only by tokens that may not make them change nothing.
    let before = node.json(&["tenant", "get", "t1"])?;
    refused(&node, Some(&staging), &["tenant", "move", "t1", "mt2"], "PermissionDenied")?;
    refused(&node, Some(&tenant), &["tenant", "pin", "t1", "mt2"], "PermissionDenied")?;
    refused(&node, Some(&staging), &["zone", "delete", PROD], "PermissionDenied")?;
    refused(&node, Some(&staging_zone), &["acme", "set", "t1.apps.example.test", "from-zone-operator"], "PermissionDenied")?;
    refused(&node, Some(&tenant), &["acme", "set", "t2.apps.example.test", "from-t1"], "PermissionDenied")?;
    refused(&node, Some(&operator), &["token", "create", "escalate", "--role", "admin"], "PermissionDenied")?;
    // A scoped operator may not start serving a name no zone contains (prod's
    // CNAME targets live in example.test.), and an alias may not take a name
    // the service rule gives another tenant (issue 14).
    let outside = dir.path().join("outside.toml");
    std::fs::write(&outside, common::zone_file("example.test.", "staging"))?;
    refused(&node, Some(&staging), &["zone", "put", outside.to_str().unwrap_or_default()], "PermissionDenied")?;
    refused(&node, Some(&tenant), &["tenant", "alias", "add", "t1", "ws-newco"], "FailedPrecondition")?;
    assert_eq!(node.json(&["tenant", "get", "t1"])?, before);
    let a = answers(&query(node.dns(), "t1.apps.example.test.", RecordType::A)?);
    assert!(a.len() == 1 && a[0].ends_with(" 198.51.100.1"), "{a:?}");
    assert!(!answers(&query(node.dns(), "apps.example.test.", RecordType::SOA)?).is_empty(), "the prod zone is still served");
    let t1_txt = txt(&node, "_acme-challenge.t1.apps.example.test.")?;
    let t2_txt = txt(&node, "_acme-challenge.t2.apps.example.test.")?;
    assert!(!t1_txt.iter().any(|t| t.contains("from-zone-operator")), "{t1_txt:?}");
    assert!(!t2_txt.iter().any(|t| t.contains("from-t1")), "{t2_txt:?}");
    assert_eq!(node.json(&["token", "list"])?["credentials"].as_array().map(Vec::len), Some(5));

    // The tenant lists its own challenges only.
    let own = node.cli_as(Some(&tenant), &["acme", "list", "--json"])?;
    assert!(own.contains("_acme-challenge.t1.apps.example.test.") && own.contains("_acme-challenge.t1-alias.apps.example.test."), "{own}");
    assert!(!own.contains("t2."), "{own}");

    // A tenant token clearing another tenant's challenge: denied, value kept.
    refused(&node, Some(&tenant), &["acme", "clear", "t2.apps.example.test"], "PermissionDenied")?;
    assert_eq!(txt(&node, "_acme-challenge.t2.apps.example.test.")?.len(), 1);

    // Revocation: the next call with the token is refused.
    let id = node.json(&["token", "list"])?["credentials"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "robot-t1"))
        .and_then(|c| c["id"].as_str().map(str::to_string))
        .ok_or_else(|| anyhow::anyhow!("robot-t1 not listed"))?;
    refused(&node, Some(&operator), &["token", "revoke", &id], "PermissionDenied")?;
    node.cli_as(Some(&admin), &["token", "revoke", &id])?;
    refused(&node, Some(&tenant), &["acme", "set", "t1.apps.example.test", "after-revoke"], "Unauthenticated")?;
    assert!(!txt(&node, "_acme-challenge.t1.apps.example.test.")?.iter().any(|t| t.contains("after-revoke")));

    // Credentials survive a restart (they are replicated state, stored hashed).
    node.kill9()?;
    node.spawn()?;
    node.wait_leader(Duration::from_secs(30))?;
    node.cli_as(Some(&operator), &["tenant", "get", "t1"])?;
    refused(&node, Some(&tenant), &["tenant", "get", "t1"], "Unauthenticated")?;
    Ok(())
}

#[test]
fn an_api_beyond_loopback_without_auth_refuses_to_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Node::prepare(dir.path(), 1)?;
    let api = format!("0.0.0.0:{}", node.ports.api);
    let config = std::fs::read_to_string({
        node.write_config(1, "")?;
        &node.config
    })?
    .replace(&format!("127.0.0.1:{}", node.ports.api), &api);
    std::fs::write(&node.config, &config)?;
    let out = std::process::Command::new(BIN).args(["serve", "--config"]).arg(&node.config).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("listen.api") && stderr.contains("api.auth = \"none\""), "{stderr}");
    assert!(stderr.contains(&node.config.display().to_string()), "the error names the file: {stderr}");
    assert!(!node.dir.join("data").exists(), "nothing was created");
    Ok(())
}

#[test]
fn a_learner_joins_a_cluster_that_needs_tokens_with_the_bootstrap_token() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut voter = start(dir.path(), 1, "")?;
    voter.wait_leader(Duration::from_secs(30))?;
    let mut learner = Node::prepare(dir.path(), 2)?;
    let token_file = dir.path().join("bootstrap.token");
    learner.write_config(
        2,
        &format!(
            "[api]\nbootstrap_token_file = {:?}\n[cluster]\nrole = \"learner\"\njoin = [{:?}]\n",
            token_file.display().to_string(),
            voter.server()
        ),
    )?;
    learner.token = Some(BOOTSTRAP.into());
    // Without the token, adding a member is refused.
    refused(&voter, None, &["member", "add-learner", "2", "--peer", "127.0.0.1:1", "--api", "127.0.0.1:2"], "Unauthenticated")?;
    learner.spawn()?;
    learner.wait_status(Duration::from_secs(30), "joins as a learner", |v| v["role"] == "learner" && v["leader_id"] == 1)?;
    voter.cli(&["cluster", "put", "mt1", "--ipv4", "198.51.100.1"])?;
    eventually(Duration::from_secs(10), "the learner applies the write", || {
        learner.json(&["cluster", "list"]).is_ok_and(|v| v.to_string().contains("mt1"))
    })?;
    // The learner's API needs tokens too.
    refused(&learner, None, &["cluster", "list"], "Unauthenticated")?;
    Ok(())
}
