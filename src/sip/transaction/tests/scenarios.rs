//! One test per fixture in `sip-fixtures/scenarios/`, so that a failure names the file.

use super::harness::run_fixture;

macro_rules! scenarios {
    ($($test:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $test() {
                run_fixture($file);
            }
        )*

        /// Every fixture file has a test above, and every test a file.
        #[test]
        fn every_fixture_has_a_test() {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sip-fixtures/scenarios");
            let mut on_disk: Vec<String> = std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("{dir}: {e}"))
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter(|name| name.ends_with(".scn"))
                .collect();
            on_disk.sort();
            let mut listed: Vec<String> = vec![$($file.to_string()),*];
            listed.sort();
            assert_eq!(on_disk, listed);
        }
    };
}

scenarios! {
    ist_486_udp_no_ack => "ist-486-udp-no-ack.scn",
    ist_486_tcp_no_ack => "ist-486-tcp-no-ack.scn",
    ist_486_udp_ack_timer_i => "ist-486-udp-ack-timer-i.scn",
    ist_trying_when_tu_silent => "ist-trying-when-tu-silent.scn",
    ist_no_trying_when_tu_answers => "ist-no-trying-when-tu-answers.scn",
    ist_retransmission_resends_last_provisional => "ist-retransmission-resends-last-provisional.scn",
    ist_retransmission_before_trying => "ist-retransmission-before-trying.scn",
    ist_200_accepted => "ist-200-accepted.scn",
    uas2xx_no_ack_gives_up => "uas2xx-no-ack-gives-up.scn",
    uas2xx_ack_stops => "uas2xx-ack-stops.scn",
    nist_final_resent_on_retransmission => "nist-final-resent-on-retransmission.scn",
    nist_tcp_timer_j_zero => "nist-tcp-timer-j-zero.scn",
    nist_silent_tu_no_408 => "nist-silent-tu-no-408.scn",
    nict_udp_timer_e_f => "nict-udp-timer-e-f.scn",
    nict_provisional_e_at_t2 => "nict-provisional-e-at-t2.scn",
    nict_tcp_final => "nict-tcp-final.scn",
    nict_tcp_timer_f => "nict-tcp-timer-f.scn",
    ict_udp_timer_a_b => "ict-udp-timer-a-b.scn",
    ict_tcp_timer_b => "ict-tcp-timer-b.scn",
    ict_486_udp_ack_timer_d => "ict-486-udp-ack-timer-d.scn",
    ict_486_tcp_timer_d_zero => "ict-486-tcp-timer-d-zero.scn",
    ict_200_accepted_timer_m => "ict-200-accepted-timer-m.scn",
    ict_transport_error => "ict-transport-error.scn",
    table_invite_200_ack => "table-invite-200-ack.scn",
    table_invite_200_no_ack => "table-invite-200-no-ack.scn",
    table_cancel_pending_invite => "table-cancel-pending-invite.scn",
    table_bye_out => "table-bye-out.scn",
    table_invite_out_cancel => "table-invite-out-cancel.scn",
    table_invite_out_timeout => "table-invite-out-timeout.scn",
    table_100k_terminated => "table-100k-terminated.scn",
}
