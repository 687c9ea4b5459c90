--@include broker_common
--@include enqueue_one
--@include enqueue_checked
-- Broker.enqueue of a batch in which some jobs have dependencies (sent 'waiting'): as
-- enqueue.lua, but first every parent must be known (held, tombstoned, or earlier in the
-- batch), else nothing is filed and the reply is the error 'NODEP <job> <parent>'.
-- Returns each job's document as filed (its parents may have settled it already).
return enqueue_checked(ARGV)
