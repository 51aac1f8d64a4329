use super::*;

fn ne16(v: u16) -> [u8; 2] {
    v.to_ne_bytes()
}

fn ne32(v: u32) -> [u8; 4] {
    v.to_ne_bytes()
}

#[test]
fn get_family_request_bytes() {
    let mut want = Vec::new();
    want.extend_from_slice(&ne32(28)); // nlmsg_len: 16 + 4 + 8
    want.extend_from_slice(&ne16(0x10)); // GENL_ID_CTRL
    want.extend_from_slice(&ne16(1)); // NLM_F_REQUEST
    want.extend_from_slice(&ne32(7)); // seq
    want.extend_from_slice(&ne32(0)); // pid: the kernel fills it
    want.extend_from_slice(&[3, 1, 0, 0]); // CTRL_CMD_GETFAMILY, version 1
    want.extend_from_slice(&ne16(8)); // nla_len: 4 + "nbd\0"
    want.extend_from_slice(&ne16(2)); // CTRL_ATTR_FAMILY_NAME
    want.extend_from_slice(b"nbd\0");
    assert_eq!(get_family_request(7), want);
}

fn request() -> ConnectRequest {
    ConnectRequest {
        index: Some(3),
        size_bytes: 1 << 30,
        block_size: 4096,
        server_flags: 0x1ed,
        timeout_secs: 30,
        dead_conn_timeout_secs: 10,
        sockets: vec![5, 6],
        backend: Some("duet:r0".into()),
        destroy_on_disconnect: true,
    }
}

#[test]
fn connect_request_round_trips_through_the_parser() {
    let bytes = connect_request(0x21, 9, &request());
    let total = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    assert_eq!(total, bytes.len());
    assert_eq!(total % 4, 0);
    assert_eq!(&bytes[4..6], &ne16(0x21));
    assert_eq!(&bytes[6..8], &ne16(1 | 4), "request and ack");
    assert_eq!(&bytes[16..18], &[1, 1], "NBD_CMD_CONNECT, version 1");
    let attrs = attributes(&bytes[20..]).expect("attributes");
    let find = |k: u16| attrs.iter().find(|a| a.kind == k).expect("attribute");
    assert_eq!(u32_of(find(NBD_ATTR_INDEX)), Ok(3));
    let u64_of = |a: &Attr<'_>| {
        let mut b = [0u8; 8];
        b.copy_from_slice(a.payload);
        u64::from_ne_bytes(b)
    };
    assert_eq!(u64_of(find(NBD_ATTR_SIZE_BYTES)), 1 << 30);
    assert_eq!(u64_of(find(NBD_ATTR_BLOCK_SIZE_BYTES)), 4096);
    assert_eq!(u64_of(find(NBD_ATTR_SERVER_FLAGS)), 0x1ed);
    assert_eq!(u64_of(find(NBD_ATTR_TIMEOUT)), 30);
    assert_eq!(u64_of(find(NBD_ATTR_DEAD_CONN_TIMEOUT)), 10);
    assert_eq!(u64_of(find(NBD_ATTR_CLIENT_FLAGS)), 1);
    assert_eq!(find(NBD_ATTR_BACKEND_IDENTIFIER).payload, b"duet:r0\0");
    let sockets = find(NBD_ATTR_SOCKETS);
    assert!(sockets.nested);
    let items = attributes(sockets.payload).expect("items");
    assert_eq!(items.len(), 2);
    let fds: Vec<u32> = items
        .iter()
        .map(|item| {
            assert!(item.nested && item.kind == NBD_SOCK_ITEM);
            let inner = attributes(item.payload).expect("fd");
            assert_eq!(inner[0].kind, NBD_SOCK_FD);
            u32_of(&inner[0]).expect("u32")
        })
        .collect();
    assert_eq!(fds, [5, 6]);
    // Every nla_len fits its place: the parser consumed the message exactly.
    let sum: usize = attrs
        .iter()
        .map(|a| (NLA_HDRLEN + a.payload.len() + 3) & !3)
        .sum();
    assert_eq!(20 + sum, bytes.len());
}

/// A reply as the kernel sends it, with the given attributes.
fn reply(kind: u16, cmd: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut m = Message::new(kind, 0, 1, cmd, 1);
    for (k, p) in attrs {
        m.attr(*k, p);
    }
    m.finish()
}

fn error_reply(errno: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&ne32(36));
    b.extend_from_slice(&ne16(NLMSG_ERROR));
    b.extend_from_slice(&ne16(0));
    b.extend_from_slice(&ne32(1));
    b.extend_from_slice(&ne32(0));
    b.extend_from_slice(&(-errno).to_ne_bytes());
    b.extend_from_slice(&[0u8; 16]); // the original header
    b
}

#[test]
fn replies_parse_and_errors_are_the_kernels() {
    let family = reply(
        0x10,
        1,
        &[
            (CTRL_ATTR_FAMILY_NAME, b"nbd\0"),
            (CTRL_ATTR_FAMILY_ID, &ne16(0x21)),
        ],
    );
    assert_eq!(parse_family_reply(&family), Ok(0x21));
    let connect = reply(0x21, NBD_CMD_CONNECT, &[(NBD_ATTR_INDEX, &ne32(4))]);
    assert_eq!(parse_connect_reply(&connect), Ok(4));
    assert_eq!(
        parse_family_reply(&error_reply(2)),
        Err(NetlinkError::NoNbdDriver)
    );
    assert!(
        NetlinkError::NoNbdDriver
            .to_string()
            .contains("modprobe nbd")
    );
    assert_eq!(
        parse_connect_reply(&error_reply(16)),
        Err(NetlinkError::Kernel(16))
    );
    assert_eq!(parse_ack(&error_reply(0)), Ok(()));
    assert_eq!(parse_ack(&error_reply(22)), Err(NetlinkError::Kernel(22)));
    let empty = reply(0x21, NBD_CMD_CONNECT, &[]);
    assert_eq!(
        parse_connect_reply(&empty),
        Err(NetlinkError::Missing("NBD_ATTR_INDEX"))
    );
}

#[test]
fn disconnect_request_bytes() {
    let b = disconnect_request(0x21, 2, 4);
    assert_eq!(b.len(), 28);
    assert_eq!(&b[16..18], &[NBD_CMD_DISCONNECT, 1]);
    assert_eq!(&b[20..22], &ne16(8));
    assert_eq!(&b[22..24], &ne16(NBD_ATTR_INDEX));
    assert_eq!(&b[24..28], &ne32(4));
}

#[test]
fn truncated_and_lying_messages_are_errors_never_panics() {
    let good = reply(0x21, NBD_CMD_CONNECT, &[(NBD_ATTR_INDEX, &ne32(4))]);
    for cut in 0..good.len() {
        assert!(parse_connect_reply(&good[..cut]).is_err(), "cut at {cut}");
    }
    for i in 0..good.len() {
        // 2 turns the message into an NLMSG_ERROR; 0x80 and 0xff make
        // lengths and error codes huge or negative.
        for v in [0u8, 1, 2, 3, 0x7f, 0x80, 0xff] {
            let mut m = good.clone();
            m[i] = v;
            let _ = parse_connect_reply(&m);
            let _ = parse_family_reply(&m);
            let _ = parse_ack(&m);
        }
    }
    let mut lying = good.clone();
    lying[..4].copy_from_slice(&ne32(1000));
    assert!(parse_connect_reply(&lying).is_err());
    let mut short_attr = good.clone();
    short_attr[20..22].copy_from_slice(&ne16(2));
    assert!(parse_connect_reply(&short_attr).is_err());
}

#[test]
fn max_sectors_path() {
    assert_eq!(
        max_sectors_kb_path(3),
        "/sys/block/nbd3/queue/max_sectors_kb"
    );
}

/// Reads the (nla_len, nla_type) at `at`, as the kernel would.
fn nla_at(bytes: &[u8], at: usize) -> (u16, u16) {
    (
        u16::from_ne_bytes([bytes[at], bytes[at + 1]]),
        u16::from_ne_bytes([bytes[at + 2], bytes[at + 3]]),
    )
}

#[test]
fn connect_request_lengths_and_padding_are_exact() {
    let mut req = request();
    // 9 bytes with its NUL, so the attribute needs 3 bytes of padding.
    req.backend = Some("duet:r10".into());
    let b = connect_request(0x21, 9, &req);
    // Each u64 attribute is 4 + 8; the index 4 + 4; the backend 4 + 9,
    // padded to 16; the sockets 4 + 2 * (item 4 + fd (4 + 4)).
    let want: [(usize, u16, u16); 12] = [
        (20, 8, NBD_ATTR_INDEX),
        (28, 12, NBD_ATTR_SIZE_BYTES),
        (40, 12, NBD_ATTR_BLOCK_SIZE_BYTES),
        (52, 12, NBD_ATTR_SERVER_FLAGS),
        (64, 12, NBD_ATTR_TIMEOUT),
        (76, 12, NBD_ATTR_DEAD_CONN_TIMEOUT),
        (88, 12, NBD_ATTR_CLIENT_FLAGS),
        (100, 13, NBD_ATTR_BACKEND_IDENTIFIER),
        (116, 28, NBD_ATTR_SOCKETS | NLA_F_NESTED),
        (120, 12, NBD_SOCK_ITEM | NLA_F_NESTED),
        (124, 8, NBD_SOCK_FD),
        (132, 12, NBD_SOCK_ITEM | NLA_F_NESTED),
    ];
    for (at, len, kind) in want {
        assert_eq!(nla_at(&b, at), (len, kind), "attribute at {at}");
    }
    assert_eq!(&b[104..116], b"duet:r10\0\0\0\0", "NUL, then padding");
    assert_eq!(nla_at(&b, 136), (8, NBD_SOCK_FD));
    assert_eq!(&b[128..132], &ne32(5));
    assert_eq!(&b[140..144], &ne32(6));
    assert_eq!(b.len(), 144);
    assert_eq!(&b[..4], &ne32(144), "nlmsg_len is the whole message");
}

#[test]
fn without_optional_fields_only_the_required_attributes_go_out() {
    let req = ConnectRequest {
        index: None,
        backend: None,
        destroy_on_disconnect: false,
        sockets: vec![7],
        ..request()
    };
    let b = connect_request(0x21, 1, &req);
    let kinds: Vec<u16> = attributes(&b[20..])
        .expect("attributes")
        .iter()
        .map(|a| a.kind)
        .collect();
    // No index lets the kernel pick a free device; no client flags keeps
    // the device after disconnect.
    assert_eq!(
        kinds,
        [
            NBD_ATTR_SIZE_BYTES,
            NBD_ATTR_BLOCK_SIZE_BYTES,
            NBD_ATTR_SERVER_FLAGS,
            NBD_ATTR_TIMEOUT,
            NBD_ATTR_DEAD_CONN_TIMEOUT,
            NBD_ATTR_SOCKETS
        ]
    );
}

#[test]
fn an_oversized_backend_name_is_cut_not_given_a_lying_length() {
    let mut req = request();
    // Multi-byte characters, so the cut has to land on a char boundary.
    req.backend = Some("é".repeat(40_000));
    let b = connect_request(0x21, 1, &req);
    let attrs = attributes(&b[20..]).expect("attributes");
    let backend = attrs
        .iter()
        .find(|a| a.kind == NBD_ATTR_BACKEND_IDENTIFIER)
        .expect("backend");
    let (text, nul) = backend.payload.split_at(backend.payload.len() - 1);
    assert_eq!(nul, [0]);
    assert_eq!(std::str::from_utf8(text).map(str::len), Ok(MAX_BACKEND_LEN));
    // The sockets still follow, found at the place the lengths say.
    assert!(attrs.iter().any(|a| a.kind == NBD_ATTR_SOCKETS));
}

#[test]
fn every_cut_of_every_message_is_an_error() {
    let family = reply(0x10, 1, &[(CTRL_ATTR_FAMILY_ID, &ne16(0x21))]);
    let connect = reply(0x21, NBD_CMD_CONNECT, &[(NBD_ATTR_INDEX, &ne32(4))]);
    let error = error_reply(16);
    let ack = error_reply(0);
    for cut in 0..family.len() {
        assert!(
            parse_family_reply(&family[..cut]).is_err(),
            "family cut {cut}"
        );
    }
    for cut in 0..connect.len() {
        assert!(
            parse_connect_reply(&connect[..cut]).is_err(),
            "connect cut {cut}"
        );
    }
    for cut in 0..error.len() {
        // Cut, the kernel's refusal must not read as some other answer.
        assert!(
            matches!(parse_ack(&error[..cut]), Err(NetlinkError::Malformed(_))),
            "error cut {cut}"
        );
    }
    for cut in 0..ack.len() {
        assert!(parse_ack(&ack[..cut]).is_err(), "ack cut {cut}");
    }
    let request = connect_request(0x21, 1, &request());
    for cut in 0..request.len() {
        assert!(message(&request[..cut]).is_err(), "request cut {cut}");
    }
}

#[test]
fn lying_lengths_are_errors() {
    let good = reply(0x21, NBD_CMD_CONNECT, &[(NBD_ATTR_INDEX, &ne32(4))]);
    let with = |at: usize, bytes: &[u8]| {
        let mut m = good.clone();
        m[at..at + bytes.len()].copy_from_slice(bytes);
        m
    };
    // nlmsg_len shorter than its own header.
    assert!(parse_connect_reply(&with(0, &ne32(15))).is_err());
    // nlmsg_len that ends inside the attribute.
    assert!(parse_connect_reply(&with(0, &ne32(26))).is_err());
    // nlmsg_len that leaves no room for the genl header.
    assert!(parse_connect_reply(&with(0, &ne32(18))).is_err());
    // nla_len past the end of the message.
    assert!(parse_connect_reply(&with(20, &ne16(9))).is_err());
    // nla_len shorter than the attribute header.
    assert!(parse_connect_reply(&with(20, &ne16(3))).is_err());
    // An index attribute too short to hold a u32.
    assert!(parse_connect_reply(&with(20, &ne16(6))).is_err());

    // A nested socket list whose item claims more than the list holds.
    let b = connect_request(0x21, 1, &request());
    let attrs = attributes(&b[20..]).expect("attributes");
    let sockets = attrs
        .iter()
        .find(|a| a.kind == NBD_ATTR_SOCKETS)
        .expect("sockets");
    let mut list = sockets.payload.to_vec();
    list[12..14].copy_from_slice(&ne16(13));
    assert!(attributes(&list).is_err());
}

#[test]
fn error_codes_the_kernel_cannot_send_are_malformed_not_a_panic() {
    for code in [i32::MIN, 1, i32::MAX] {
        let mut b = error_reply(0);
        b[16..20].copy_from_slice(&code.to_ne_bytes());
        assert!(
            matches!(parse_ack(&b), Err(NetlinkError::Malformed(_))),
            "code {code}"
        );
        assert!(parse_connect_reply(&b).is_err());
        assert!(parse_family_reply(&b).is_err());
    }
}

#[test]
fn only_the_expected_reply_is_accepted() {
    let index = [(NBD_ATTR_INDEX, &ne32(4)[..])];
    // Only an ack (the CONNECT reply went missing): not "refused: success".
    assert!(matches!(
        parse_connect_reply(&error_reply(0)),
        Err(NetlinkError::Malformed(_))
    ));
    // A reply to DISCONNECT, or NLMSG_DONE, is not CONNECT's answer.
    assert!(parse_connect_reply(&reply(0x21, NBD_CMD_DISCONNECT, &index)).is_err());
    assert!(parse_connect_reply(&reply(3, NBD_CMD_CONNECT, &index)).is_err());
    // The family reply is CTRL_CMD_NEWFAMILY, not our own GETFAMILY echoed.
    let id = [(CTRL_ATTR_FAMILY_ID, &ne16(0x21)[..])];
    assert!(parse_family_reply(&reply(0x10, CTRL_CMD_GETFAMILY, &id)).is_err());
    // Anything else means the family exists but the message is not ours.
    assert!(parse_ack(&reply(0x21, NBD_CMD_CONNECT, &index)).is_err());
}

#[test]
fn kernel_errors_name_the_errno() {
    assert_eq!(
        parse_connect_reply(&error_reply(16)),
        Err(NetlinkError::Kernel(16))
    );
    assert!(NetlinkError::Kernel(16).to_string().contains("EBUSY"));
    // ENOENT from the family lookup is the missing module, said plainly.
    assert_eq!(
        parse_family_reply(&error_reply(2)).map_err(|e| e.to_string()),
        Err("the kernel has no NBD driver (modprobe nbd)".to_string())
    );
    // ENOENT from CONNECT is just ENOENT: the driver answered.
    assert_eq!(
        parse_connect_reply(&error_reply(2)),
        Err(NetlinkError::Kernel(2))
    );
}
