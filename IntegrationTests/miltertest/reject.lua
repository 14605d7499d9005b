-- A message that matches a signature gets 550 5.7.1 "Rejected: NAME" at end of message, and no header.
-- -D msg=FILE -D name=SIGNATURE -D qid=QUEUEID [-D size=N: MAIL FROM declares SIZE=N]
dofile(libdir .. "/common.lua")
run(function()
  local conn = open_conn()
  local r = transaction(conn, msg, { qid = qid, size = size })
  check(r == SMFIR_REPLYCODE, "expected a 550 reply at end of message, got " .. reply_name(r))
  check(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", "Rejected: " .. name),
        "expected 550 5.7.1 with the text 'Rejected: " .. name .. "'")
  check(not mt.eom_check(conn, MT_HDRADD), "a rejected message had a header added")
  check(not mt.eom_check(conn, MT_QUARANTINE), "a rejected message was quarantined")
  mt.disconnect(conn)
end)
