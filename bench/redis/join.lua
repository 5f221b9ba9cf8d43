-- Raw limit of a join on a Redis line (`bench/sale-open.sh`, run by redis-benchmark with EVAL):
-- about the work of one new user's join, written here for the baseline, not the adapter's script.
-- KEYS: the line's user places, ticket counter, tickets and waiting set (one hash tag).
-- ARGV: the user, the time of issue.
-- Compare the user's place (absent for a new user), move it, draw the next number, write the
-- ticket and put it in the waiting set.
if redis.call('HGET', KEYS[1], ARGV[1]) then
  return 0
end
local ticket = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], ticket)
redis.call('HSET', KEYS[3], ticket, ARGV[1] .. ' WAITING ' .. ARGV[2])
redis.call('ZADD', KEYS[4], ticket, ticket)
return ticket
