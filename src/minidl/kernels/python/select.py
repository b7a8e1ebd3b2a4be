"""Selection by bit masks: t where a condition does not hold, else exactly 0, in one cheap integer pass (where()
and masked_fill() take several times longer on the CPU). The condition comes as 1.0 / 0.0 from an in-place
float comparison (t.clone().le_(0)), several times faster than a comparison into a new bool tensor."""
from torch import empty

INTEGER_OF = {empty(0).float().dtype: empty(0).int().dtype, empty(0).double().dtype: empty(0).long().dtype}


def dropped_where(t, drop):
    """t where drop (1.0 / 0.0 of t's shape and dtype, overwritten) is 0.0, else +0.0; NaN and infinities pass
    through unchanged. The result is drop's memory."""
    integer = INTEGER_OF[t.dtype]
    bits = drop.view(integer).ne_(0).sub_(1)  # 1.0 -> 0, 0.0 -> all ones
    return bits.bitwise_and_(t.view(integer)).view(t.dtype)
