//! A shared-data cache entry, as any worker (or a different build of the
//! filter, after a hot reload) may have written it: every read of any
//! bytes is bounds-checked; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oauthv2info_core::{EntryHead, Lookup};
use oauthv2info_names::variables::Field;
use oauthv2info_names::TokenKind;

fuzz_target!(|data: &[u8]| {
    let Some(head) = EntryHead::parse(data) else {
        return;
    };
    for kind in TokenKind::ALL {
        let _ = head.answers(kind, b"tok", 0);
    }
    assert!(head.body_at() <= data.len());
    if let Some(Lookup::Known(p)) = head.lookup() {
        let _ = (p.active(), p.plain(), p.attribute_count(), p.validate());
        for field in Field::ALL {
            let _ = p.field(field);
            let _ = p.is_past(field, 0);
        }
        for (name, value) in p.attributes() {
            assert!(name.len() + value.len() <= data.len());
            let _ = p.attribute(name);
        }
        let _ = p.has_products();
        for product in p.products() {
            assert!(product.name.len() <= data.len());
            let _ = (product.proxies.count(), product.resources.count());
            let _ = (product.environments.count(), product.attributes.count());
            for config in product.operation_configs {
                for op in config.operations {
                    let _ = (op.resource.len(), op.methods.count());
                }
                let _ = config.attributes.count();
            }
        }
    }
});
