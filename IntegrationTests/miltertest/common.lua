-- Helpers shared by the miltertest scripts; each script loads this with dofile(libdir .. "/common.lua").
-- Globals from the command line (-D name=value): sock (libmilter socket spec), libdir, and per script
-- msg (a message file), name (a signature name), qid (a queue id for the {i} macro).

function check(cond, what)
  if not cond then error(what, 0) end
end

-- miltertest functions return nil on success or an error string.
function must(err, what)
  if err ~= nil then error(what .. ": " .. tostring(err), 0) end
end

function reply_name(r)
  local names = {
    [SMFIR_ACCEPT] = "accept", [SMFIR_CONTINUE] = "continue", [SMFIR_REJECT] = "reject",
    [SMFIR_TEMPFAIL] = "tempfail", [SMFIR_REPLYCODE] = "replycode", [SMFIR_DISCARD] = "discard",
    [SMFIR_SKIP] = "skip",
  }
  return names[r] or ("reply " .. tostring(r))
end

function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

function open_conn()
  local conn = mt.connect(sock, 50, 0.1)
  check(conn ~= nil, "cannot connect to the milter at " .. tostring(sock))
  mt.set_timeout(60)
  must(mt.conninfo(conn, "client.example", "192.0.2.10"), "conninfo")
  check(mt.getreply(conn) == SMFIR_CONTINUE, "connect: " .. reply_name(mt.getreply(conn)))
  if not mt.test_option(conn, SMFIP_NOHELO) then
    must(mt.helo(conn, "client.example"), "helo")
  end
  return conn
end

-- MAIL FROM (with {auth_authen} when opts.auth is set, SIZE=opts.size when set) and RCPT TO (with the {i} macro).
-- Returns nil when both continued, else the reply that ended the transaction.
function envelope(conn, opts)
  opts = opts or {}
  if opts.auth then
    mt.macro(conn, SMFIC_MAIL, "{auth_authen}", opts.auth, "{auth_type}", "PLAIN")
  end
  if opts.size then
    -- An ESMTP SIZE= argument, as Postfix passes on the client's declared size.
    must(mt.mailfrom(conn, opts.from or "<sender@example.org>", "SIZE=" .. opts.size), "mailfrom")
  else
    must(mt.mailfrom(conn, opts.from or "<sender@example.org>"), "mailfrom")
  end
  local r = mt.getreply(conn)
  if r ~= SMFIR_CONTINUE then return r end
  mt.macro(conn, SMFIC_RCPT, "i", opts.qid or "MTQID0001")
  must(mt.rcptto(conn, opts.rcpt or "<user@dest.example>"), "rcptto")
  if not mt.test_option(conn, SMFIP_NR_RCPT) and mt.getreply(conn) ~= SMFIR_CONTINUE then
    return mt.getreply(conn)
  end
  return nil
end

-- Headers, end of headers and body of an RFC 5322 message file (CRLF), as an MTA sends them:
-- folded header lines joined with LF, the leading space of values kept only with SMFIP_HDR_LEADSPC,
-- the body in chunks of at most 65535 bytes. Returns the reply that ended the transaction, or nil.
function send_message(conn, path)
  local raw = read_file(path)
  local sep = raw:find("\r\n\r\n", 1, true)
  check(sep ~= nil, path .. ": no header/body separator")
  local head, body = raw:sub(1, sep + 1), raw:sub(sep + 4)
  local lead = mt.test_option(conn, SMFIP_HDR_LEADSPC)
  local headers = {}
  for line in head:gmatch("(.-)\r\n") do
    if line:match("^[ \t]") and #headers > 0 then
      headers[#headers].value = headers[#headers].value .. "\n" .. line
    else
      local n, v = line:match("^([^:]+):(.*)$")
      check(n ~= nil, path .. ": bad header line " .. line)
      table.insert(headers, { name = n, value = v })
    end
  end
  if not mt.test_option(conn, SMFIP_NODATA) then
    must(mt.data(conn), "data")
  end
  for _, h in ipairs(headers) do
    local v = h.value
    if not lead then v = v:gsub("^ ", "", 1) end
    must(mt.header(conn, h.name, v), "header " .. h.name)
    if not mt.test_option(conn, SMFIP_NR_HDR) and mt.getreply(conn) ~= SMFIR_CONTINUE then
      return mt.getreply(conn)
    end
  end
  if not mt.test_option(conn, SMFIP_NOEOH) then
    must(mt.eoh(conn), "eoh")
  end
  local pos = 1
  while pos <= #body do
    must(mt.bodystring(conn, body:sub(pos, pos + 65534)), "body")
    pos = pos + 65535
    local r = mt.getreply(conn)
    if r == SMFIR_SKIP then break end
    if r ~= SMFIR_CONTINUE then return r end
  end
  return nil
end

-- One whole transaction; returns the final reply (at EOM, or the earlier one that ended it).
function transaction(conn, path, opts)
  local r = envelope(conn, opts)
  if r ~= nil then return r end
  r = send_message(conn, path)
  if r ~= nil then return r end
  must(mt.eom(conn), "eom")
  return mt.getreply(conn)
end

-- Runs f under pcall: miltertest exits 1 without a word on a Lua error, so print it ourselves.
function run(f)
  local ok, err = pcall(f)
  if not ok then
    print("FAIL: " .. tostring(err))
    os.exit(1)
  end
  print("PASS")
end
