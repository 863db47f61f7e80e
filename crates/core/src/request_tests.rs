//! The request's variables, parameters and texts: lossy text, the one-pass
//! parameter finder against a plain one, percent decoding, header names.

use super::*;

#[test]
fn lossy_text_is_from_utf8_lossy() {
    let cases: [&[u8]; 12] = [
        b"",
        b"plain",
        "\u{e9}t\u{e9} \u{1f600}".as_bytes(),
        b"o\xffk",
        b"\xff\xfe",
        b"\xe2\x82",
        b"ab\xe2\x82",
        b"\xe2\x82x\xf0\x9f\x98",
        b"\xc0\xaf\xed\xa0\x80",
        b"\xf4\x90\x80\x80end",
        b"\x80\x80\x80",
        b"\xf0\x9f\x98\x80\xf0",
    ];
    for bytes in cases {
        assert_eq!(lossy(bytes), String::from_utf8_lossy(bytes), "{bytes:?}");
    }
    // Every two-byte sequence, and each after a valid prefix.
    for a in 0..=255u8 {
        for b in [0x00, 0x41, 0x80, 0x9f, 0xa0, 0xbf, 0xc0, 0xe0, 0xf0, 0xff] {
            let bytes = [b'x', a, b, a];
            assert_eq!(lossy(&bytes), String::from_utf8_lossy(&bytes), "{bytes:?}");
        }
    }
}

fn request() -> RequestInfo {
    let headers = [
        ("authorization", b"Bearer t0k".to_vec()),
        ("x-list", b"a, b ,c".to_vec()),
        ("x-list", b"d".to_vec()),
        ("x-empty", b"".to_vec()),
        ("x-bin", vec![b'o', 0xff, b'k']),
        ("x.2", b"dotted".to_vec()),
    ];
    RequestInfo {
        method: b"POST".to_vec(),
        path: b"/v1/items?access_token=abc%20def&x=1&x=2&plus=a+b&bad=%zz%4&empty=&flag&enc%5Fname=v&utf=%C3%A9&nonutf=%FF".to_vec(),
        headers: Headers::All(headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()),
        client_ip: Some("10.1.2.3".into()),
        form_body: Some(b"department_id=42&dup=a&dup=b&sp=a+b%21".to_vec()),
        path_read: false,
        method_read: false,
    }
}

fn resolve(r: &RequestInfo, name: &str) -> Option<String> {
    let var = RequestVar::parse(name)?;
    let mut out = String::new();
    r.resolve_into(&var, &mut out).then_some(out)
}

#[test]
fn proxy_path_suffix_is_the_path_after_the_basepath() {
    let suffix = |basepath: &str, path: &str| {
        let r = RequestInfo {
            path: path.as_bytes().to_vec(),
            ..RequestInfo::default()
        };
        let var = RequestVar::PathSuffix {
            basepath: basepath.to_string(),
        };
        let mut out = String::new();
        r.resolve_into(&var, &mut out).then_some(out)
    };
    assert_eq!(
        suffix("/v1/orders", "/v1/orders/7?x=1").as_deref(),
        Some("/7")
    );
    assert_eq!(
        suffix("/v1/orders/", "/v1/orders/7/a").as_deref(),
        Some("/7/a")
    );
    assert_eq!(suffix("/v1/orders", "/v1/orders").as_deref(), Some(""));
    assert_eq!(suffix("/v1/orders", "/v1/orders?x").as_deref(), Some(""));
    assert_eq!(suffix("/v1/orders", "/v1/ordersX"), None);
    assert_eq!(suffix("/v1/orders", "/v2/orders/7"), None);
    assert_eq!(suffix("/", "/a/b").as_deref(), Some("/a/b"));
    assert_eq!(suffix("", "/a/b").as_deref(), Some("/a/b"));
    let base = RequestVar::BasePath {
        basepath: "/v1".into(),
    };
    let mut out = String::new();
    assert!(RequestInfo::default().resolve_into(&base, &mut out));
    assert_eq!(out, "/v1");
}

#[test]
fn a_wildcard_element_of_the_base_path_is_any_one_element() {
    fn suffix<'a>(basepath: &str, path: &'a str) -> Option<&'a [u8]> {
        path_suffix(path.as_bytes(), basepath.as_bytes())
    }
    let base = "/cds-au/v1/banking/accounts/*/transactions";
    assert_eq!(
        suffix(base, "/cds-au/v1/banking/accounts/a1/transactions"),
        Some(&b""[..])
    );
    assert_eq!(
        suffix(base, "/cds-au/v1/banking/accounts/a1/transactions/t9"),
        Some(&b"/t9"[..])
    );
    assert_eq!(
        suffix(base, "/cds-au/v1/banking/accounts//transactions"),
        None
    );
    assert_eq!(
        suffix(base, "/cds-au/v1/banking/accounts/a/b/transactions"),
        None
    );
    assert_eq!(
        suffix(base, "/cds-au/v1/banking/accounts/a1/transactionsX"),
        None
    );
    assert_eq!(suffix(base, "/cds-au/v1/banking/accounts/a1"), None);
    assert_eq!(
        suffix("/team/*", "/team/blue/x").map(|s| s.to_vec()),
        Some(b"/x".to_vec())
    );
    assert_eq!(suffix("/*/*/", "/a/b"), Some(&b""[..]));
    assert_eq!(basepath_problem(base), None);
    for bad in ["/a/**", "/a/b*", "/*b/c", "/a/*.json"] {
        assert!(basepath_problem(bad).is_some(), "{bad}");
    }
}

#[test]
fn request_line_variables() {
    let r = request();
    assert_eq!(resolve(&r, "request.verb").as_deref(), Some("POST"));
    assert_eq!(resolve(&r, "request.path").as_deref(), Some("/v1/items"));
    assert!(resolve(&r, "request.uri")
        .unwrap()
        .starts_with("/v1/items?access_token="));
    assert!(resolve(&r, "request.querystring")
        .unwrap()
        .starts_with("access_token=abc%20def&"));
    assert_eq!(resolve(&r, "client.ip").as_deref(), Some("10.1.2.3"));
    assert_eq!(resolve(&r, "request.unknown"), None);
    let bare = RequestInfo {
        path: b"/p".to_vec(),
        ..RequestInfo::default()
    };
    assert_eq!(resolve(&bare, "request.querystring").as_deref(), Some(""));
    assert_eq!(resolve(&bare, "request.queryparam.a"), None);
    assert_eq!(resolve(&bare, "client.ip"), None);
}

#[test]
fn header_rules_follow_apigee() {
    let r = request();
    assert_eq!(
        resolve(&r, "request.header.authorization").as_deref(),
        Some("Bearer t0k")
    );
    assert_eq!(
        resolve(&r, "request.header.AUTHORIZATION").as_deref(),
        Some("Bearer t0k")
    );
    assert_eq!(resolve(&r, "request.header.x-list").as_deref(), Some("a"));
    assert_eq!(resolve(&r, "request.header.x-list.1").as_deref(), Some("a"));
    assert_eq!(resolve(&r, "request.header.x-list.2").as_deref(), Some("b"));
    assert_eq!(resolve(&r, "request.header.x-list.3").as_deref(), Some("c"));
    assert_eq!(resolve(&r, "request.header.x-list.4").as_deref(), Some("d"));
    assert_eq!(resolve(&r, "request.header.x-list.5"), None);
    assert_eq!(
        resolve(&r, "request.header.x-list.values.string").as_deref(),
        Some("a, b ,c, d")
    );
    assert_eq!(
        resolve(&r, "request.header.x-list.values.count").as_deref(),
        Some("4")
    );
    assert_eq!(resolve(&r, "request.header.x-empty").as_deref(), Some(""));
    assert_eq!(
        resolve(&r, "request.header.x-bin").as_deref(),
        Some("o\u{fffd}k")
    );
    assert_eq!(resolve(&r, "request.header.missing"), None);
    assert_eq!(resolve(&r, "request.header.missing.values.string"), None);
    // "x" is absent, so "x.2" is the header really named so.
    assert_eq!(resolve(&r, "request.header.x.2").as_deref(), Some("dotted"));
    assert_eq!(resolve(&r, "request.header.x-list.0"), None);
}

#[test]
fn named_header_reads_use_their_index() {
    let r = RequestInfo {
        headers: Headers::Named(vec![None, Some(b" v1 , v2".to_vec())]),
        ..RequestInfo::default()
    };
    let var = RequestVar::Header {
        name: "x-b".into(),
        named_index: Some(1),
        whole: false,
    };
    let mut out = String::new();
    assert!(r.resolve_into(&var, &mut out));
    assert_eq!(out, "v1");
    let whole = RequestVar::Header {
        name: "x-b".into(),
        named_index: Some(1),
        whole: true,
    };
    out.clear();
    assert!(r.resolve_into(&whole, &mut out));
    assert_eq!(out, " v1 , v2");
    let absent = RequestVar::Header {
        name: "x-a".into(),
        named_index: Some(0),
        whole: false,
    };
    assert!(!r.resolve_into(&absent, &mut out));
}

#[test]
fn query_parameters_are_decoded() {
    let r = request();
    let q = |n: &str| resolve(&r, &format!("request.queryparam.{n}"));
    assert_eq!(q("access_token").as_deref(), Some("abc def"));
    assert_eq!(q("x").as_deref(), Some("1"));
    assert_eq!(q("x.2").as_deref(), Some("2"));
    assert_eq!(q("x.3"), None);
    assert_eq!(q("plus").as_deref(), Some("a b"));
    assert_eq!(q("bad").as_deref(), Some("%zz%4"));
    assert_eq!(q("empty").as_deref(), Some(""));
    assert_eq!(q("flag").as_deref(), Some(""));
    assert_eq!(q("enc_name").as_deref(), Some("v"));
    assert_eq!(q("utf").as_deref(), Some("é"));
    assert_eq!(q("nonutf").as_deref(), Some("\u{fffd}"));
    assert_eq!(q("none"), None);
}

#[test]
fn form_parameters() {
    let r = request();
    let f = |n: &str| resolve(&r, &format!("request.formparam.{n}"));
    assert_eq!(f("department_id").as_deref(), Some("42"));
    assert_eq!(f("dup.2").as_deref(), Some("b"));
    assert_eq!(f("sp").as_deref(), Some("a b!"));
    let no_body = RequestInfo::default();
    assert_eq!(resolve(&no_body, "request.formparam.department_id"), None);
}

/// `find_param` as it was: the string split at each `&`, each pair
/// at its first `=`, each name decoded when it holds an escape.
fn find_param_reference<'a>(encoded: &'a [u8], name: &str, mut n: usize) -> Option<&'a [u8]> {
    for pair in encoded.split(|&b| b == b'&') {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let equal = key == name.as_bytes()
            || key.iter().any(|&b| b == b'%' || b == b'+') && {
                let mut decoded = String::new();
                percent_decode_into(key, &mut decoded);
                decoded == name
            };
        if pair.is_empty() || !equal {
            continue;
        }
        if n == 0 {
            return Some(value);
        }
        n -= 1;
    }
    None
}

#[test]
fn the_one_pass_parameter_finder_finds_what_the_split_one_did() {
    let pieces: [&[u8]; 24] = [
        b"a",
        b"ab",
        b"a=",
        b"a=1",
        b"a=1=2",
        b"=",
        b"=v",
        b"",
        b"a%3D",
        b"a%3D=v",
        b"%61=x",
        b"a+b=y",
        b"a%20b=z",
        b"a.2=dotted",
        b"access_token=BT00042a1b2c3d4e5f6",
        b"access_token",
        b"access_token=",
        b"access_token_x=n",
        b"xaccess_token=m",
        b"b=%C3%A9",
        b"c=\xff\xfe",
        b"a%=%",
        b"%zz=q",
        b"long_name_of_a_parameter=0123456789abcdef",
    ];
    let names = [
        "a",
        "ab",
        "a=",
        "a b",
        "a+b",
        "a.2",
        "access_token",
        "access_token_x",
        "",
        "%zz",
        "long_name_of_a_parameter",
        "c",
        "b",
        "a%",
        "=",
    ];
    // Every two pieces joined by one or two `&`, alone and with a third.
    let mut queries: Vec<Vec<u8>> = vec![Vec::new(), b"&".to_vec(), b"&&".to_vec()];
    for x in pieces {
        for y in pieces {
            for sep in [&b"&"[..], b"&&"] {
                queries.push([x, sep, y].concat());
                for z in [&b"a=3"[..], b"access_token=t2", b"", b"a"] {
                    queries.push([x, sep, y, b"&", z].concat());
                }
            }
        }
    }
    for query in &queries {
        for name in names {
            for n in 0..3 {
                assert_eq!(
                    find_param(query, name, n),
                    find_param_reference(query, name, n),
                    "{:?} {name:?} {n}",
                    lossy(query)
                );
            }
        }
    }
}

#[test]
fn the_word_at_a_time_scans_agree_with_byte_scans() {
    // Every length up to 40 and every place of the byte sought, with
    // bytes around it that differ from it by one bit or by the high bit.
    for len in 0..40usize {
        for fill in [b'a', b'\'', b'%' ^ 0x80, 0xa6, 0x27, b'$', 0x00, 0xff] {
            for at in 0..=len {
                let mut bytes = vec![fill; len];
                if at < len {
                    bytes[at] = b'&';
                }
                let expected = bytes.iter().position(|&b| b == b'&').unwrap_or(len);
                assert_eq!(find_byte(&bytes, b'&'), expected, "{bytes:?}");
                for escape in [b'%', b'+'] {
                    let mut coded = vec![fill; len];
                    if at < len {
                        coded[at] = escape;
                    }
                    let expected = coded.iter().any(|&b| b == b'%' || b == b'+');
                    assert_eq!(has_escapes(&coded), expected, "{coded:?}");
                }
            }
            // Two matches: the first is found.
            if len >= 2 {
                let mut bytes = vec![fill; len];
                bytes[len - 1] = b'&';
                bytes[len / 2] = b'&';
                assert_eq!(find_byte(&bytes, b'&'), len / 2);
            }
        }
    }
}

#[test]
fn percent_decoding_keeps_bad_escapes_and_replaces_what_is_not_utf8() {
    let decode = |input: &[u8]| {
        let mut out = String::from("<");
        percent_decode_into(input, &mut out);
        out
    };
    assert_eq!(decode(b"BT00042a1b2c3d4e5f6"), "<BT00042a1b2c3d4e5f6");
    assert_eq!(decode(b"%ff"), "<\u{fffd}");
    assert_eq!(decode(b"a%C3"), "<a\u{fffd}");
    assert_eq!(decode(b"%C3%A9+%E2%82%AC"), "<\u{e9} \u{20ac}");
    assert_eq!(decode(b"\xff%41"), "<\u{fffd}A");
    assert_eq!(decode(b"\xc3%A9"), "<\u{e9}");
    assert_eq!(decode(b"o\xffk"), "<o\u{fffd}k");
    assert_eq!(decode("\u{e9}t\u{e9}".as_bytes()), "<\u{e9}t\u{e9}");
    assert_eq!(decode(b"%"), "<%");
    assert_eq!(decode(b"%%"), "<%%");
    assert_eq!(decode(b"%4"), "<%4");
    assert_eq!(decode(b"%zz%4g%G1"), "<%zz%4g%G1");
    assert_eq!(decode(b"100%"), "<100%");
    assert_eq!(decode(b"%2B+"), "<+ ");
    assert_eq!(decode(b"a%2"), "<a%2");
    assert_eq!(decode(b""), "<");
    // Long plain and coded values (past the word-at-a-time scan's tail).
    assert_eq!(decode(&[b'x'; 37]), format!("<{}", "x".repeat(37)));
    let mut coded = vec![b'y'; 33];
    coded.push(b'+');
    assert_eq!(decode(&coded), format!("<{} ", "y".repeat(33)));
}

#[test]
fn percent_coding_round_trips() {
    for s in ["", "abc", "a b+c/d?e=f&g", "é€😀", "%%", "\u{0}"] {
        assert_eq!(percent_decode(&percent_encode(s)), s);
    }
    assert_eq!(percent_decode("%"), "%");
    assert_eq!(percent_decode("%4"), "%4");
    assert_eq!(percent_decode("%41"), "A");
    assert_eq!(percent_decode("a%2"), "a%2");
}

#[test]
fn request_variable_names() {
    assert!(is_request_variable("request.header.x"));
    assert!(is_request_variable("client.ip"));
    assert!(!is_request_variable("request.header."));
    assert!(!is_request_variable("request.content"));
    assert_eq!(
        RequestVar::parse("request.header.X-A"),
        Some(RequestVar::Header {
            name: "x-a".into(),
            named_index: None,
            whole: false,
        })
    );
    assert!(matches!(
        RequestVar::parse("request.header.x.2"),
        Some(RequestVar::HeaderIndexed { .. })
    ));
}

#[test]
fn addresses() {
    assert_eq!(ip_from_address("10.0.0.1:443"), "10.0.0.1");
    assert_eq!(ip_from_address("[::1]:8080"), "::1");
    assert_eq!(ip_from_address("::1"), "::1");
    assert_eq!(ip_from_address("10.0.0.1"), "10.0.0.1");
    assert_eq!(ip_from_address("unix:/tmp/s"), "unix:/tmp/s");
}

#[test]
fn content_types_and_header_values() {
    assert!(is_form_urlencoded(b"application/x-www-form-urlencoded"));
    assert!(is_form_urlencoded(
        b"Application/X-WWW-Form-Urlencoded; charset=UTF-8"
    ));
    assert!(!is_form_urlencoded(b"application/json"));
    assert!(!is_form_urlencoded(b"multipart/form-data; boundary=x"));
    assert!(is_valid_header_value(b"a b\tc"));
    assert!(!is_valid_header_value(b"a\r\nb: c"));
    for b in (0u8..0x20).filter(|&b| b != b'\t').chain([0x7f]) {
        assert!(!is_valid_header_value(&[b'a', b]), "{b:#x}");
    }
    assert!(is_valid_header_value("é".as_bytes()));
}
