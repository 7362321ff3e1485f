/* The libcupti functions the record path calls, resolved by dlsym at run time (cupti.c): one list, so the
 * pointer declarations (gpufl_native.h) and definitions (cupti.c) cannot drift apart.
 * CUPTI_FN(return type, name, parameter types) — the includer defines CUPTI_FN. */
CUPTI_FN(CUptiResult, cuptiGetVersion, (uint32_t *))
CUPTI_FN(CUptiResult, cuptiGetResultString, (CUptiResult, const char **))
CUPTI_FN(CUptiResult, cuptiGetTimestamp, (uint64_t *))
CUPTI_FN(CUptiResult, cuptiSubscribe, (CUpti_SubscriberHandle *, CUpti_CallbackFunc, void *))
CUPTI_FN(CUptiResult, cuptiUnsubscribe, (CUpti_SubscriberHandle))
CUPTI_FN(CUptiResult, cuptiEnableCallback, (uint32_t, CUpti_SubscriberHandle, CUpti_CallbackDomain,
                                            CUpti_CallbackId))
CUPTI_FN(CUptiResult, cuptiActivityEnable, (CUpti_ActivityKind))
CUPTI_FN(CUptiResult, cuptiActivityDisable, (CUpti_ActivityKind))
CUPTI_FN(CUptiResult, cuptiActivityRegisterCallbacks, (CUpti_BuffersCallbackRequestFunc,
                                                       CUpti_BuffersCallbackCompleteFunc))
CUPTI_FN(CUptiResult, cuptiActivityGetNextRecord, (uint8_t *, size_t, CUpti_Activity **))
CUPTI_FN(CUptiResult, cuptiActivityFlushAll, (uint32_t))
CUPTI_FN(CUptiResult, cuptiActivityFlushPeriod, (uint32_t))
CUPTI_FN(CUptiResult, cuptiActivityGetNumDroppedRecords, (CUcontext, uint32_t, size_t *))
CUPTI_FN(CUptiResult, cuptiActivitySetAttribute, (CUpti_ActivityAttribute, size_t *, void *))
CUPTI_FN(CUptiResult, cuptiFinalize, (void))
