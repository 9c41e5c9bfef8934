//! `token`: create an API credential (its token printed once), list, revoke.

use switchboard_proto::v1::{self, credentials_client::CredentialsClient};

use crate::error::Result;
use crate::output::{table, Output};
use crate::transport::{status, Ch};
use crate::view::{CredentialCreated, CredentialList, CredentialView};
use crate::zone::deleted;
use crate::{Ctx, TokenCmd};

const HEADERS: [&str; 5] = ["ID", "NAME", "ROLE", "SCOPE", "REVISION"];

fn row(c: &v1::Credential) -> [String; 5] {
    let scope = if !c.environments.is_empty() {
        format!("environments={}", c.environments.join(","))
    } else if !c.zones.is_empty() {
        format!("zones={}", c.zones.join(","))
    } else if !c.tenant.is_empty() {
        format!("tenant={}", c.tenant)
    } else {
        "all".into()
    };
    [c.id.clone(), c.name.clone(), c.role.clone(), scope, c.revision.to_string()]
}

pub async fn run(channel: Ch, ctx: &Ctx, cmd: &TokenCmd) -> Result<Output> {
    let mut c = CredentialsClient::new(channel);
    match cmd {
        TokenCmd::Create { name, role, environments, zones, tenant } => {
            let req = v1::CreateCredentialRequest {
                name: name.clone(),
                role: role.as_str().into(),
                environments: environments.clone(),
                zones: zones.clone(),
                tenant: tenant.clone().unwrap_or_default(),
            };
            let r = c.create_credential(req).await.map_err(status)?.into_inner();
            let cred = r.credential.unwrap_or_default();
            let title = format!("revision {}; the token (shown once, only its hash is stored):\n{}\n", r.revision, r.token);
            let view = CredentialCreated { revision: r.revision, credential: (&cred).into(), token: r.token };
            Output::table(&view, Some(title), table(&HEADERS, [row(&cred)]))
        }
        TokenCmd::List => {
            let r = c.list_credentials(v1::ListCredentialsRequest {}).await.map_err(status)?.into_inner();
            let t = table(&HEADERS, r.credentials.iter().map(row));
            let view = CredentialList { revision: r.revision, credentials: r.credentials.iter().map(CredentialView::from).collect() };
            Output::table(&view, None, t)
        }
        TokenCmd::Revoke { id } => {
            let req = v1::RevokeCredentialRequest { id: id.clone(), options: Some(ctx.options.clone()) };
            let r = c.revoke_credential(req).await.map_err(status)?.into_inner();
            deleted(id, r.revision)
        }
    }
}
