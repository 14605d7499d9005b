-- Overload: while the only scan slot is taken (the test keeps another session scanning slow messages,
-- with --workers 1 --max-waiting 0), new transactions are turned away with a temporary failure: at
-- MAIL FROM (a reply code; miltertest cannot read its text there) or at end of message (451 4.3.2).
-- Runs transactions until it has seen `want` tempfails or `seconds` have passed.
-- -D msg=FILE -D busy_text=TEXT -D seconds=N -D want=N
dofile(libdir .. "/common.lua")
run(function()
  local deadline = os.time() + tonumber(seconds)
  local at_mail, at_eom, accepted, n = 0, 0, 0, 0
  local conn = open_conn()
  while at_mail + at_eom < tonumber(want) and os.time() <= deadline do
    n = n + 1
    local r = envelope(conn, { qid = "MTQIDBUSY" .. n })
    if r ~= nil then
      check(r == SMFIR_REPLYCODE or r == SMFIR_TEMPFAIL, "MAIL FROM: expected a tempfail, got " .. reply_name(r))
      at_mail = at_mail + 1
      mt.abort(conn)
    else
      r = send_message(conn, msg)
      check(r == nil, "message refused before end of message: " .. reply_name(r or 0))
      must(mt.eom(conn), "eom")
      r = mt.getreply(conn)
      if r == SMFIR_REPLYCODE then
        check(mt.eom_check(conn, MT_SMTPREPLY, "451", "4.3.2", busy_text),
              "end of message: expected 451 4.3.2 " .. busy_text)
        at_eom = at_eom + 1
      else
        check(r == SMFIR_CONTINUE or r == SMFIR_ACCEPT, "end of message: got " .. reply_name(r))
        accepted = accepted + 1
      end
    end
  end
  print(string.format("transactions=%d tempfail_at_mail=%d tempfail_at_eom=%d accepted=%d", n, at_mail, at_eom, accepted))
  check(at_mail + at_eom >= tonumber(want), "no tempfail while the only scan slot was busy")
  mt.disconnect(conn)
end)
