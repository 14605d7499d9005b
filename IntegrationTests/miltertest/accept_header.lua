-- A clean message is accepted with the scanned header added (value not empty); two messages on one
-- connection, to check the per-message state is reset between them.
-- -D msg=FILE -D header=NAME
dofile(libdir .. "/common.lua")
run(function()
  local conn = open_conn()
  for i = 1, 2 do
    local r = transaction(conn, msg, { qid = "MTQIDACC" .. i })
    check(r == SMFIR_CONTINUE or r == SMFIR_ACCEPT,
          "message " .. i .. ": expected accept at end of message, got " .. reply_name(r))
    check(mt.eom_check(conn, MT_HDRADD, header), "message " .. i .. ": no " .. header .. " header added")
    local v = mt.getheader(conn, header, 0)
    check(v ~= nil and v:match("%S") ~= nil, "message " .. i .. ": empty " .. header .. " header")
    check(not mt.eom_check(conn, MT_QUARANTINE), "a clean message was quarantined")
    print(header .. ":" .. v)
  end
  mt.disconnect(conn)
end)
