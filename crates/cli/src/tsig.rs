//! `tsig`: create a TSIG key (its secret printed once), list, delete.

use base64::Engine;
use switchboard_proto::v1::{self, tsig_keys_client::TsigKeysClient};

use crate::error::Result;
use crate::output::{table, Output};
use crate::transport::{status, Ch};
use crate::view::{TsigKeyCreated, TsigKeyList, TsigKeyView};
use crate::zone::deleted;
use crate::{Ctx, TsigCmd};

const HEADERS: [&str; 5] = ["NAME", "ALGORITHM", "SCOPE", "ALLOW", "REVISION"];

fn row(k: &TsigKeyView) -> [String; 5] {
    [k.name.clone(), k.algorithm.clone(), k.scope.clone(), k.allow.join(","), k.revision.to_string()]
}

pub async fn run(channel: Ch, ctx: &Ctx, cmd: &TsigCmd) -> Result<Output> {
    let mut c = TsigKeysClient::new(channel);
    match cmd {
        TsigCmd::Create { name, algorithm, environments, zones, tenant, allow } => {
            let req = v1::CreateTsigKeyRequest {
                name: name.clone(),
                algorithm: algorithm.clone(),
                environments: environments.clone(),
                zones: zones.clone(),
                tenant: tenant.clone().unwrap_or_default(),
                allow: allow.clone(),
            };
            let r = c.create_tsig_key(req).await.map_err(status)?.into_inner();
            let key = TsigKeyView::from(&r.key.unwrap_or_default());
            let secret = base64::engine::general_purpose::STANDARD.encode(&r.secret);
            // The form `nsupdate -y` and `kdig -y` take.
            let line = format!("{}:{}:{}", key.algorithm, key.name, secret);
            let view = TsigKeyCreated { revision: r.revision, name: key.name.clone(), algorithm: key.algorithm.clone(), secret, key };
            Output::line(&view, line)
        }
        TsigCmd::List => {
            let r = c.list_tsig_keys(v1::ListTsigKeysRequest {}).await.map_err(status)?.into_inner();
            let keys: Vec<TsigKeyView> = r.keys.iter().map(TsigKeyView::from).collect();
            let t = table(&HEADERS, keys.iter().map(row));
            Output::table(&TsigKeyList { revision: r.revision, keys }, None, t)
        }
        TsigCmd::Delete { name } => {
            let req = v1::DeleteTsigKeyRequest { name: name.clone(), options: Some(ctx.options.clone()) };
            let r = c.delete_tsig_key(req).await.map_err(status)?.into_inner();
            deleted(name, r.revision)
        }
    }
}
