-- With skip-authenticated, a message from an SMTP-authenticated sender ({auth_authen} at MAIL) is not
-- scanned: EICAR is accepted. The same message without authentication is
-- rejected, so the skip is due to the authentication and nothing else. (On a new connection: libmilter
-- keeps a stage's macros until the MTA sends that stage's macros again.)
-- -D msg=FILE (an EICAR message) -D name=SIGNATURE
dofile(libdir .. "/common.lua")
run(function()
  local conn = open_conn()
  local r = transaction(conn, msg, { auth = "alice", qid = "MTQIDAUTH" })
  check(r == SMFIR_ACCEPT or r == SMFIR_CONTINUE,
        "authenticated sender: expected accept, got " .. reply_name(r))
  mt.disconnect(conn)
  conn = open_conn()
  r = transaction(conn, msg, { qid = "MTQIDNOAUTH" })
  check(r == SMFIR_REPLYCODE, "unauthenticated sender: expected 550, got " .. reply_name(r))
  check(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", "Rejected: " .. name),
        "unauthenticated sender: expected 550 5.7.1 Rejected: " .. name)
  mt.disconnect(conn)
end)
