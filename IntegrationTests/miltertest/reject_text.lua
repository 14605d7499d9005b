-- A message gets CODE STATUS TEXT (exactly) at end of message, and no header and no quarantine.
-- -D msg=FILE -D code=550 -D status=5.7.1 -D text=TEXT -D qid=QUEUEID
dofile(libdir .. "/common.lua")
run(function()
  local conn = open_conn()
  local r = transaction(conn, msg, { qid = qid })
  check(r == SMFIR_REPLYCODE, "expected a " .. code .. " reply at end of message, got " .. reply_name(r))
  check(mt.eom_check(conn, MT_SMTPREPLY, code, status, text),
        "expected " .. code .. " " .. status .. " with the text '" .. text .. "'")
  check(not mt.eom_check(conn, MT_HDRADD), "a rejected message had a header added")
  check(not mt.eom_check(conn, MT_QUARANTINE), "a rejected message was quarantined")
  mt.disconnect(conn)
end)
