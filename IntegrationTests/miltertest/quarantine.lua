-- With an action rule "* quarantine", a matching message is accepted and quarantined (the MTA puts it
-- on hold). (An accept/continue reply means no SMTP reply code was set; miltertest's
-- eom_check(MT_SMTPREPLY) without arguments is unusable: it reports "Invalid argument".)
-- -D msg=FILE -D name=SIGNATURE
dofile(libdir .. "/common.lua")
run(function()
  local conn = open_conn()
  local r = transaction(conn, msg, { qid = "MTQIDQUAR" })
  check(r == SMFIR_CONTINUE or r == SMFIR_ACCEPT, "expected accept with quarantine, got " .. reply_name(r))
  check(mt.eom_check(conn, MT_QUARANTINE), "the message was not quarantined")
  mt.disconnect(conn)
end)
