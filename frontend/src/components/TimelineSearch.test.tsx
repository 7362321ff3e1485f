import { cleanup, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Api, type SearchMatch } from '../api/client';
import { TimelineSearch } from './TimelineSearch';

afterEach(() => {
  vi.unstubAllGlobals();
  cleanup();
});

const session = { id: 's', origin: 1732521600000000000n } as never;

function answer(body: string) {
  const f = vi.fn(async (_url: string) => new Response(body, { status: 200, headers: { 'Content-Type': 'application/json' } }));
  vi.stubGlobal('fetch', f);
  return f;
}

describe('TimelineSearch', () => {
  it('asks for the next match from the window edge, then from the match, and hands each one over', async () => {
    const f = answer(
      '{"text":"relu","kernels":2,"scopes":0,"match":{"kind":"kernel","id":"7","name":"void relu<float>(float*)","start_ns":1732521600000000500,"end_ns":1732521600000000900,"device_id":0,"stream_id":7,"thread_id":null,"depth":null}}',
    );
    const got: SearchMatch[] = [];
    render(<TimelineSearch api={new Api('t')} session={session} windowStart={() => 100} onMatch={(m) => got.push(m)} />);
    const box = screen.getByLabelText('Search the timeline');
    fireEvent.change(box, { target: { value: 'relu' } });
    fireEvent.keyDown(box, { key: 'Enter' });
    await waitFor(() => expect(got).toHaveLength(1));
    let url = new URL(f.mock.calls[0][0], 'http://x');
    expect(url.pathname).toBe('/api/v1/sessions/s/search');
    expect([url.searchParams.get('text'), url.searchParams.get('at_ns'), url.searchParams.get('direction')]).toEqual(['relu', '1732521600000000099', 'next']);
    expect(got[0]).toMatchObject({ kind: 'kernel', id: '7', start: 500, end: 900, stream: 7 });
    expect(screen.getByTestId('search-status').textContent).toBe('2 kernels, 0 scope instances match · relu at +500 ns');
    fireEvent.keyDown(box, { key: 'Enter', shiftKey: true });
    await waitFor(() => expect(f).toHaveBeenCalledTimes(2));
    url = new URL(f.mock.calls[1][0], 'http://x');
    expect([url.searchParams.get('at_ns'), url.searchParams.get('direction')]).toEqual(['1732521600000000500', 'prev']);
    // the step starts from the match itself (its kind and id), so matches starting at the same ns each come once;
    // a new search from the window edge has no such position
    expect([url.searchParams.get('at_kind'), url.searchParams.get('at_id')]).toEqual(['kernel', '7']);
    expect([...new URL(f.mock.calls[0][0], 'http://x').searchParams.keys()]).not.toContain('at_kind');
  });

  it('says when there is no further match and moves nothing', async () => {
    answer('{"text":"x","kernels":0,"scopes":0,"match":null}');
    const onMatch = vi.fn();
    render(<TimelineSearch api={new Api('t')} session={session} windowStart={() => 0} onMatch={onMatch} />);
    fireEvent.change(screen.getByLabelText('Search the timeline'), { target: { value: 'x' } });
    fireEvent.click(screen.getByLabelText('Next match'));
    await waitFor(() => expect(screen.getByTestId('search-status').textContent).toBe('0 kernels, 0 scope instances match · no later one'));
    expect(onMatch).not.toHaveBeenCalled();
  });
});
